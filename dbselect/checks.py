"""System checks: misconfiguration is reported by `manage.py check`, not by a crash."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

ROUTER = "dbselect.routers.SessionRouter"
MIDDLEWARE = "dbselect.middleware.DatabaseSelectionMiddleware"
SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


@register()
def check_router(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """dbselect.E001: the session router must be installed."""
    if ROUTER not in getattr(settings, "DATABASE_ROUTERS", []):
        return [
            Error(
                f"'{ROUTER}' is missing from DATABASE_ROUTERS.",
                hint="Without it every query goes to the default database, not the session's.",
                id="dbselect.E001",
            )
        ]
    return []


def _auth_middleware_index(middleware: list[str]) -> int | None:
    """Return where Django's AuthenticationMiddleware (or a subclass of it) sits, if anywhere."""
    from django.contrib.auth.middleware import AuthenticationMiddleware
    from django.utils.module_loading import import_string

    for position, dotted in enumerate(middleware):
        try:
            cls = import_string(dotted)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, AuthenticationMiddleware):
            return position
    return None


@register()
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """dbselect.E002: the middleware must sit between the session and auth middleware."""
    middleware = list(getattr(settings, "MIDDLEWARE", []))
    hint = (
        f"Put '{MIDDLEWARE}' after '{SESSION_MIDDLEWARE}' and before '{AUTH_MIDDLEWARE}': "
        "it reads the session, and users are loaded from the selected database."
    )
    if MIDDLEWARE not in middleware:
        return [Error(f"'{MIDDLEWARE}' is missing from MIDDLEWARE.", hint=hint, id="dbselect.E002")]
    index = middleware.index(MIDDLEWARE)
    auth = _auth_middleware_index(middleware)
    wrong = (SESSION_MIDDLEWARE in middleware and middleware.index(SESSION_MIDDLEWARE) > index) or (
        auth is not None and auth < index
    )
    if wrong:
        return [Error(f"'{MIDDLEWARE}' is in the wrong place.", hint=hint, id="dbselect.E002")]
    return []


ALLOWED_ROOTS_HINT = (
    "Set DBSELECT_ALLOWED_ROOTS to the folders that hold NukeWorks databases (colon-separated)."
)


def _production() -> bool:
    return getattr(settings, "NUKEWORKS_ENV", "development") == "production"


@register()
def check_allowed_roots_in_production(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """dbselect.E003: production requires allowed roots (visitors type paths before sign-in)."""
    from dbselect.conf import get_config

    config = get_config()
    if _production() and not config["ALLOWED_ROOTS"] and not config["ALLOW_UNRESTRICTED_PATHS"]:
        return [
            Error(
                "NUKEWORKS_ENV=production needs DBSELECT_ALLOWED_ROOTS: without it anyone who "
                "reaches the server may browse and select any file path on it before signing in.",
                hint=ALLOWED_ROOTS_HINT
                + " To accept any path anyway, set DBSELECT_ALLOW_UNRESTRICTED_PATHS=true.",
                id="dbselect.E003",
            )
        ]
    return []


@register(deploy=True)
def check_allowed_roots(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """dbselect.W001: unrestricted paths are allowed by the spec but risky in production.

    Under NUKEWORKS_ENV=production the same case is the error dbselect.E003 instead, unless
    ALLOW_UNRESTRICTED_PATHS opts out of it (then this warning remains).
    """
    from dbselect.conf import get_config

    config = get_config()
    if not config["ALLOWED_ROOTS"] and (not _production() or config["ALLOW_UNRESTRICTED_PATHS"]):
        return [
            Warning(
                "Any file path on this server can be selected and browsed.",
                hint=ALLOWED_ROOTS_HINT,
                id="dbselect.W001",
            )
        ]
    return []


@register()
def check_synchronous(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """dbselect.E004: DBSELECT["SYNCHRONOUS"] must name a SQLite synchronous mode."""
    from dbselect.conf import SYNCHRONOUS_MODES, get_config

    value = get_config()["SYNCHRONOUS"]
    if str(value).upper() not in SYNCHRONOUS_MODES:
        return [
            Error(
                f"DBSELECT['SYNCHRONOUS'] is {value!r}, which is not a SQLite synchronous mode.",
                hint=f"Use one of {', '.join(SYNCHRONOUS_MODES)} (FULL loses nothing committed).",
                id="dbselect.E004",
            )
        ]
    return []
