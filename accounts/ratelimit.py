"""Login rate limiting: failed sign-ins counted per username and per client address.

The counters live in Django's cache (alias `ratelimit`, file-based under instance/ by default
so every worker process on the machine shares them), never in the user-selected database: a
visitor cannot reset them by switching to another database file, and the same username is
limited across every file. django-axes was not used because it installs models whose
migrations would land in every NukeWorks database file and mark them all "needs migration".

A fixed window: after LIMIT failures within WINDOW seconds of the first one, further attempts
for that username (or from that address) are refused, correct password or not, until the
window ends. A successful sign-in clears the username's counter.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.base import BaseCache
from django.http import HttpRequest

CACHE_ALIAS = "ratelimit"
DEFAULTS = {"USERNAME_LIMIT": 5, "IP_LIMIT": 20, "WINDOW": 900}


@dataclass(frozen=True)
class Limit:
    """One counter: its cache key and how many failures it allows."""

    key: str
    limit: int


def get_config() -> dict[str, int]:
    """Return the effective limits (settings.LOGIN_RATE_LIMIT over the defaults)."""
    return {**DEFAULTS, **getattr(settings, "LOGIN_RATE_LIMIT", {})}


def _cache() -> BaseCache:
    try:
        return caches[CACHE_ALIAS]
    except InvalidCacheBackendError:
        return caches["default"]


def normalize_username(username: object) -> str:
    """Return the form under which a username is counted (case and spaces do not escape)."""
    return str(username or "").strip().casefold()[:150]


def client_address(request: HttpRequest | None) -> str:
    """Return the address a request came from (the proxy's, behind a reverse proxy)."""
    if request is None:
        return ""
    return str(request.META.get("REMOTE_ADDR", ""))[:64]


def _digest(kind: str, value: str) -> str:
    # Hashed: cache keys must be short and free of the characters a username may hold.
    return f"login-fail:{kind}:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def limits_for(request: HttpRequest | None, username: object) -> list[Limit]:
    """Return the counters that apply to this attempt."""
    config = get_config()
    result = []
    name = normalize_username(username)
    if name and config["USERNAME_LIMIT"] > 0:
        result.append(Limit(_digest("user", name), config["USERNAME_LIMIT"]))
    address = client_address(request)
    if address and config["IP_LIMIT"] > 0:
        result.append(Limit(_digest("ip", address), config["IP_LIMIT"]))
    return result


def retry_after(request: HttpRequest | None, username: object) -> int:
    """Return the seconds until this attempt is allowed again; 0 when it is allowed now."""
    cache = _cache()
    now = time.time()
    wait = 0
    for limit in limits_for(request, username):
        entry = cache.get(limit.key)
        if not entry:
            continue
        count, started = entry
        if count >= limit.limit:
            wait = max(wait, int(started + get_config()["WINDOW"] - now) + 1)
    return wait


def record_failure(request: HttpRequest | None, username: object) -> None:
    """Count one failed sign-in for the username and the client address."""
    cache = _cache()
    now = time.time()
    window = get_config()["WINDOW"]
    for limit in limits_for(request, username):
        count, started = cache.get(limit.key) or (0, now)
        if now - started >= window:
            count, started = 0, now
        remaining = max(1, int(started + window - now))
        # get + set, not incr: the file cache's incr would restart the window. Racing
        # failures may count as one, and attempts already past the check are not stopped, so
        # parallel attempts can overshoot the limit by about the number of concurrent
        # requests (workers x threads) — a bound, not an exact count.
        cache.set(limit.key, (count + 1, started), timeout=remaining)


def reset_username(username: object) -> None:
    """Forget a username's failures (after a successful sign-in)."""
    name = normalize_username(username)
    if name:
        _cache().delete(_digest("user", name))


def message(wait: int) -> str:
    """Return the text shown to a visitor who must wait."""
    minutes = max(1, (wait + 59) // 60)
    unit = "minute" if minutes == 1 else "minutes"
    return (
        "Too many failed sign-in attempts for this account or from your address. "
        f"Try again in {minutes} {unit}."
    )
