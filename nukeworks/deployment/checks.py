"""Production refuses to start with unsafe settings (system checks, Error level).

Registered without the deploy tag, so every command that runs the checks (`check`, `migrate`,
`runserver`, `run_huey`…) stops on them; gunicorn workers run them when the application loads
(`refuse_unsafe_start`, from nukeworks/wsgi.py), so a production server never serves with them.
The third unsafe case, unrestricted user-typed paths, is dbselect.E003 (dbselect/checks.py).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register, run_checks
from django.core.exceptions import ImproperlyConfigured


def production() -> bool:
    return getattr(settings, "NUKEWORKS_ENV", "development") == "production"


@register()
def check_debug(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """deployment.E001: DEBUG shows settings and code to anyone who triggers an error."""
    if production() and settings.DEBUG:
        return [
            Error(
                "DEBUG is on in production: error pages would show settings, code and data.",
                hint="Remove DEBUG from the environment and the .env files (or set DEBUG=false).",
                id="deployment.E001",
            )
        ]
    return []


@register()
def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """deployment.E002: production needs its own SECRET_KEY, not the generated dev key."""
    if production() and getattr(settings, "NUKEWORKS_SECRET_KEY_GENERATED", False):
        return [
            Error(
                "SECRET_KEY is not set in production: the key generated into the instance "
                "folder for development would sign sessions and tokens.",
                hint="Set SECRET_KEY (50+ random characters) in the environment or a .env file.",
                id="deployment.E002",
            )
        ]
    return []


def refuse_unsafe_start() -> None:
    """In production, raise ImproperlyConfigured when any system check (deploy ones included)
    reports an error: gunicorn's worker then fails to boot and gunicorn stops."""
    if not production():
        return
    errors = [
        message
        for message in run_checks(include_deployment_checks=True)
        if message.is_serious() and not message.is_silenced()
    ]
    if errors:
        raise ImproperlyConfigured(
            "NukeWorks refuses to start in production with unsafe settings:\n"
            + "\n".join(str(message) for message in errors)
        )
