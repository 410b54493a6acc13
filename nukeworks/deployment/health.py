"""/readyz: is this server ready to take traffic? (/healthz only says the process answers.)

Built on django-health-check: each check is one of its `HealthCheck`s (run concurrently,
each under a time budget, an unexpected exception reported as a failure and logged), and the
view is its `HealthCheckView` answering one JSON shape, 200 or 503:

    {"status": "ok" | "unavailable", "failed": ["worker"],
     "checks": {"instance": {"status": "ok", "detail": "writable", "ms": 0.4}, ...}}

The checks: `instance` (the instance folder takes a new file), `databases` (the databases folder
can be listed), `worker` (a task queue worker runs on this machine, provisioning.worker; off
with NUKEWORKS_READYZ_WORKER=false on a machine that only serves pages), `redis` (PING, only
when REDIS_URL is set), then every check named in settings.NUKEWORKS_READYZ_CHECKS — the hook
for PostgreSQL databases once the product has them, e.g.
`("postgresql", "health_check.checks.Database", {"alias": "pg"})`.

The answer names checks, never paths or credentials: the probe is public, like /healthz.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.module_loading import import_string
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

_EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")
TIMEOUT = datetime.timedelta(seconds=3)


def _reason(exc: OSError) -> str:
    # The error without the file name: the answer is public.
    return exc.strerror or type(exc).__name__


@dataclasses.dataclass
class InstanceWritable(HealthCheck):
    """The instance folder (sessions, selector cache, queue, engine store) takes a new file."""

    timeout = TIMEOUT

    def run(self) -> None:
        folder = Path(settings.INSTANCE_DIR)
        try:
            fd, name = tempfile.mkstemp(prefix=".readyz-", dir=folder)
            try:
                os.write(fd, b"ready\n")
            finally:
                os.close(fd)
                os.unlink(name)
        except OSError as exc:
            reason = f"the instance folder is not writable: {_reason(exc)}"
            raise ServiceUnavailable(reason) from exc


@dataclasses.dataclass
class DatabasesReadable(HealthCheck):
    """The databases folder exists and can be listed (the selector scans it)."""

    timeout = TIMEOUT

    def run(self) -> None:
        from dbselect.conf import get_config

        folder = Path(get_config()["DATABASES_DIR"])
        try:
            with os.scandir(folder) as entries:
                next(entries, None)
        except OSError as exc:
            reason = f"the databases folder is not readable: {_reason(exc)}"
            raise ServiceUnavailable(reason) from exc


@dataclasses.dataclass
class WorkerAlive(HealthCheck):
    """A task queue worker (`manage.py run_huey`) runs on this machine."""

    timeout = TIMEOUT

    def run(self) -> None:
        from provisioning import worker

        if not worker.running():
            raise ServiceUnavailable(
                "no task queue worker (manage.py run_huey) is running on this machine"
            )


def _redis_check(url: str) -> HealthCheck:
    from health_check.contrib.redis import Redis
    from redis.asyncio import Redis as RedisClient

    factory = functools.partial(
        RedisClient.from_url, url, socket_connect_timeout=2, socket_timeout=2
    )
    check = Redis(client_factory=factory)
    check.timeout = TIMEOUT
    return check


def _build(spec: Any) -> HealthCheck:
    """One check from settings: a class or dotted path, optionally with its keyword arguments."""
    options: dict[str, Any] = {}
    if isinstance(spec, list | tuple):
        spec, options = spec[0], (spec[1] if len(spec) > 1 else {})
    cls = import_string(spec) if isinstance(spec, str) else spec
    return cls(**options)


def readiness_checks() -> dict[str, HealthCheck]:
    """Return the checks /readyz runs, by name."""
    checks: dict[str, HealthCheck] = {
        "instance": InstanceWritable(),
        "databases": DatabasesReadable(),
    }
    if getattr(settings, "NUKEWORKS_READYZ_WORKER", True):
        checks["worker"] = WorkerAlive()
    redis_url = getattr(settings, "REDIS_URL", "")
    if redis_url:
        checks["redis"] = _redis_check(redis_url)
    # The hook for more: (name, class or dotted path[, kwargs]).
    for name, *spec in getattr(settings, "NUKEWORKS_READYZ_CHECKS", []):
        checks[name] = _build(spec if len(spec) > 1 else spec[0])
    return checks


class ReadinessView(HealthCheckView):
    """GET /readyz: every check's status; 200 when all pass, else 503 naming the failed."""

    def get_executor(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext(_EXECUTOR)

    def get_checks(self) -> Iterator[HealthCheck]:
        """The checks (also what `manage.py health_check readyz --no-http` runs)."""
        yield from readiness_checks().values()

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        checks = readiness_checks()
        with self.get_executor() as executor:
            results = await asyncio.gather(*(c.get_result(executor) for c in checks.values()))
        body: dict[str, Any] = {"status": "ok", "failed": [], "checks": {}}
        for name, result in zip(checks, results, strict=True):
            entry: dict[str, Any] = {"status": "ok", "ms": round(result.time_taken * 1000, 1)}
            if result.error is not None:
                entry["status"] = "fail"
                entry["detail"] = result.error.message
                body["failed"].append(name)
            body["checks"][name] = entry
        if body["failed"]:
            body["status"] = "unavailable"
        return JsonResponse(body, status=503 if body["failed"] else 200)
