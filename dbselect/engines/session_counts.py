"""How many live sessions currently point at each database path (for the engines page).

Counted from the session files themselves (SESSION_ENGINE = the file backend, the default):
every file under SESSION_FILE_PATH is decoded and counted when it has not expired and its
`selected_db_path` is set. This is exact at the moment the page is drawn, costs a few tens of
microseconds per session file, and is capped at SCAN_LIMIT files. With another session
engine (cache, database) the sessions cannot be enumerated, and the page says so.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings

from dbselect.session import SELECTED_PATH

FILE_BACKEND = "django.contrib.sessions.backends.file"
SCAN_LIMIT = 20_000


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


def count_sessions(limit: int = SCAN_LIMIT) -> SessionCounts:
    """Return the live sessions per selected database path, read from the session files."""
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
