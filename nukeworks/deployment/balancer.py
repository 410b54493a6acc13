"""Has a load balancer (or another proxy) sent requests to this server? A marker file says so.

Several app servers behind a balancer must share their state through Redis (REDIS_URL): with
file sessions, a request that lands on the other server finds no session. A server cannot know
whether other servers exist, but it can see a proxy: the balancer adds `X-Forwarded-For`
(HAProxy's `option forwardfor`, nginx's `proxy_add_x_forwarded_for`) or `Forwarded`. The first
such request a process sees writes `instance/balancer-seen` (once per process: afterwards one
attribute test per request), and the system check deployment.W002 warns while that marker
exists and REDIS_URL is unset (nukeworks/deployment/checks.py).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("nukeworks.deployment")

MARKER = "balancer-seen"
# The headers a proxy adds, as Django's request.META names them.
PROXY_HEADERS = {"HTTP_X_FORWARDED_FOR": "X-Forwarded-For", "HTTP_FORWARDED": "Forwarded"}


def marker_path() -> Path:
    """Return the path of the marker file in the instance folder."""
    return Path(settings.INSTANCE_DIR) / MARKER


def read_marker() -> dict[str, Any] | None:
    """Return what the marker records (header, when, server), or None when there is none."""
    try:
        text = marker_path().read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def write_marker(header: str) -> None:
    """Record that a request came through a proxy (atomically; an existing marker stays)."""
    path = marker_path()
    if path.exists():
        return
    data = {
        "header": header,
        "first_seen": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "server": socket.gethostname(),
        "pid": os.getpid(),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{MARKER}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class BalancerSeenMiddleware:
    """Write instance/balancer-seen the first time this process sees a proxy's header."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        # Once per process: a marker written by an earlier process needs no second write.
        self.noted = marker_path().exists()

    def _note(self, request: HttpRequest) -> None:
        for meta, header in PROXY_HEADERS.items():
            if meta in request.META:
                self.noted = True
                try:
                    write_marker(header)
                except OSError as exc:  # an unwritable instance folder is /readyz's to report
                    logger.warning("could not write the %s marker: %s", MARKER, exc)
                return

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.async_mode:
            return self.__acall__(request)
        if not self.noted:
            self._note(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if not self.noted:
            self._note(request)
        return await self.get_response(request)
