"""The Redis server several app servers share (settings.REDIS_URL), when there is one.

Without REDIS_URL, dbselect keeps its machine-wide state in the instance folder (the engine
store, the selector's JSON file). With it, `dbselect.engines.redis_store` and
`dbselect.selector_cache` keep the same state here, under NUKEWORKS_REDIS_PREFIX, so that a
request may land on any server. One client per process and URL: redis-py's connection pool
opens connections on demand and replaces those inherited across a fork (gunicorn workers).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    import redis

DEFAULT_PREFIX = "nukeworks"

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def url() -> str:
    """Return the Redis URL in force ("" without REDIS_URL)."""
    return str(getattr(settings, "REDIS_URL", "") or "")


def enabled() -> bool:
    """Return True when the shared state lives in Redis."""
    return bool(url())


def key(*parts: str) -> str:
    """Return the name of a dbselect key: `<prefix>:dbselect:<parts…>`."""
    prefix = getattr(settings, "NUKEWORKS_REDIS_PREFIX", "") or DEFAULT_PREFIX
    return ":".join((prefix, "dbselect", *parts))


def client() -> redis.Redis:
    """Return this process's client of the Redis at REDIS_URL (bytes in, bytes out)."""
    address = url()
    found = _clients.get(address)
    if found is not None:
        return found
    import redis

    with _lock:
        found = _clients.get(address)
        if found is None:
            # Short timeouts: the request path asks Redis on every request (the dispose feed,
            # the session); a Redis that does not answer must fail those requests quickly.
            found = _clients[address] = redis.Redis.from_url(
                address, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
            )
        return found
