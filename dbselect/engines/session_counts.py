"""How many live sessions currently point at each database path (for the engines page).

Counted from the session files themselves (SESSION_ENGINE = the file backend, the default):
every file under SESSION_FILE_PATH is decoded and counted when it has not expired and its
`selected_db_path` is set. This is exact at the moment the page is drawn, costs a few tens of
microseconds per session file, and is capped at SCAN_LIMIT files. With REDIS_URL (Django's
cache backend on a Redis cache) the sessions of every server are counted the same way from
their keys (SCAN, then MGET in batches; expired ones are gone by their TTL). With another
session engine (database, a cache that cannot be listed) the page says they are unknown.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings

from dbselect.session import SELECTED_PATH

FILE_BACKEND = "django.contrib.sessions.backends.file"
CACHE_BACKEND = "django.contrib.sessions.backends.cache"
SCAN_LIMIT = 20_000
# Session keys read per MGET from Redis.
REDIS_BATCH = 500


@dataclass(frozen=True)
class SessionCounts:
    """Live sessions per selected path; `counts` is None when they cannot be counted."""

    counts: dict[str, int] | None
    scanned: int = 0
    truncated: bool = False

    def for_path(self, path: str) -> int | None:
        """Return the number of live sessions on `path`, or None when unknown."""
        return None if self.counts is None else self.counts.get(path, 0)


def _expiry(data: dict, modified: datetime.datetime) -> datetime.datetime:
    """Return when a session expires, as Django's file backend decides it."""
    value = data.get("_session_expiry")
    if value is None:
        return modified + datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE)
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value)
    # An int is "this many seconds of inactivity", counted from the last save.
    return modified + datetime.timedelta(seconds=int(value))


def _count_in_redis(limit: int) -> SessionCounts:
    """Count the sessions Django's cache backend keeps in a Redis cache (every server's)."""
    from django.contrib.sessions.backends.cache import KEY_PREFIX
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    from nukeworks.deployment.redis_cache import glob_escape

    cache = caches[settings.SESSION_CACHE_ALIAS]
    if not isinstance(cache, RedisCache):
        return SessionCounts(None)
    # Django's RedisCache has no public way to list keys: its client and serializer (the same
    # since Django 4.0) read the values as the session backend wrote them.
    client = cache._cache.get_client()
    serializer = cache._cache._serializer
    pattern = glob_escape(cache.make_and_validate_key(KEY_PREFIX)) + "*"
    counts: dict[str, int] = {}
    scanned = 0
    batch: list[bytes] = []

    def tally() -> None:
        for raw in client.mget(batch):
            if raw is None:
                continue  # expired or signed out meanwhile
            try:
                path = serializer.loads(raw).get(SELECTED_PATH)
            except Exception:  # unpickling fails in many ways: no session of ours, skip it
                continue
            if path:
                counts[path] = counts.get(path, 0) + 1
        batch.clear()

    for key in client.scan_iter(match=pattern, count=REDIS_BATCH):
        if scanned >= limit:
            tally()
            return SessionCounts(counts, scanned, truncated=True)
        scanned += 1
        batch.append(key)
        if len(batch) >= REDIS_BATCH:
            tally()
    tally()
    return SessionCounts(counts, scanned)


def count_sessions(limit: int = SCAN_LIMIT) -> SessionCounts:
    """Return the live sessions per selected database path, read from the session files (or
    from Redis, with the cache session backend on a Redis cache)."""
    if settings.SESSION_ENGINE == CACHE_BACKEND:
        import redis

        try:
            return _count_in_redis(limit)
        except redis.RedisError:  # out of reach: the page shows "—"
            return SessionCounts(None)
    if settings.SESSION_ENGINE != FILE_BACKEND:
        return SessionCounts(None)
    store_class = import_module(FILE_BACKEND).SessionStore
    folder = store_class._get_storage_path()
    prefix = settings.SESSION_COOKIE_NAME
    decoder = store_class()
    now = datetime.datetime.now(datetime.UTC)
    counts: dict[str, int] = {}
    scanned = 0
    try:
        entries = os.scandir(folder)
    except OSError:
        return SessionCounts(None)
    with entries:
        for entry in entries:
            if not entry.name.startswith(prefix) or not entry.is_file(follow_symlinks=False):
                continue
            if scanned >= limit:
                return SessionCounts(counts, scanned, truncated=True)
            scanned += 1
            try:
                with open(entry.path, encoding="ascii") as fh:
                    data = decoder.decode(fh.read())
                modified = datetime.datetime.fromtimestamp(entry.stat().st_mtime, datetime.UTC)
                path = data.get(SELECTED_PATH)
                if path and _expiry(data, modified) > now:
                    counts[path] = counts.get(path, 0) + 1
            except (OSError, ValueError, TypeError):
                continue  # a session being written or removed meanwhile
    return SessionCounts(counts, scanned)
