"""Production refuses to start with unsafe settings (system checks, Error level).

Registered without the deploy tag, so every command that runs the checks (`check`, `migrate`,
`runserver`, `run_huey`…) stops on them; gunicorn workers run them when the application loads
(`refuse_unsafe_start`, from nukeworks/wsgi.py), so a production server never serves with them.
The third unsafe case, unrestricted user-typed paths, is dbselect.E003 (dbselect/checks.py).

Warnings: several app servers that would each keep their own sessions, caches, rate limits,
dispose feed, recent paths or queue (deployment.W001 when NUKEWORKS_SERVERS says so,
deployment.W002 when a balancer's header was seen: nukeworks/deployment/balancer.py).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register, run_checks
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


# Cache backends whose entries stay on one machine (or in one process).
LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.filebased.FileBasedCache",
    "django.core.cache.backends.dummy.DummyCache",
)
SHARED_STATE_HINT = (
    "Set REDIS_URL (redis://host:6379/0) on every server, so that sessions, caches, sign-in "
    "rate limits, the engine dispose feed, the recent paths and the task queue live in Redis "
    '(README "Configuration").'
)


def _local_cache(alias: str) -> bool:
    backend = settings.CACHES.get(alias, {}).get("BACKEND", "")
    return backend in LOCAL_CACHES


def machine_local_state() -> list[str]:
    """Return what this server keeps to itself that several servers would need to share."""
    local: list[str] = []
    engine = getattr(settings, "SESSION_ENGINE", "")
    if engine.endswith(".file") or (
        engine.endswith((".cache", ".cached_db"))
        and _local_cache(getattr(settings, "SESSION_CACHE_ALIAS", "default"))
    ):
        local.append("sessions")
    if _local_cache("default"):
        local.append("the default cache (API throttles)")
    if _local_cache("ratelimit"):
        local.append("sign-in rate limits")
    if not getattr(settings, "REDIS_URL", ""):
        local += ["the engine dispose feed", "the selector's recent paths", "the task queue"]
    return local


@register()
def check_shared_state(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """deployment.W001/W002: several servers (said, or a balancer seen) without shared state."""
    from nukeworks.deployment import balancer

    local = machine_local_state()
    if not local:
        return []
    servers = int(getattr(settings, "NUKEWORKS_SERVERS", 0) or 0)
    listed = ", ".join(local)
    if servers > 1:
        return [
            Warning(
                f"NUKEWORKS_SERVERS={servers}, but these stay on each server: {listed}. A "
                "request that lands on another server loses its session and its database.",
                hint=SHARED_STATE_HINT,
                id="deployment.W001",
            )
        ]
    marker = balancer.read_marker() if servers != 1 else None
    if marker is not None:
        header = marker.get("header") or "a proxy header"
        when = marker.get("first_seen") or "earlier"
        return [
            Warning(
                f"Requests came through a load balancer or proxy ({header}, first seen {when}), "
                f"but these stay on this server: {listed}. If several app servers share the "
                "balancer, a request that lands on another one loses its session.",
                hint=f"{SHARED_STATE_HINT} If this is the only app server behind it, set "
                f"NUKEWORKS_SERVERS=1 (or delete {balancer.marker_path()}).",
                id="deployment.W002",
            )
        ]
    return []
