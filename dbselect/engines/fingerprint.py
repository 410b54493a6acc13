"""Notice a database file overwritten in place by a *different* NukeWorks database.

A file replaced by rename gets a new inode, which the engine cache notices. A file overwritten
in place (`sqlite3 .restore`, a backup-API copy, a tool writing into the same inode) keeps its
inode, and when the newcomer is a valid NukeWorks database, nothing else would tell the session
it now works on another database. The first row of `django_migrations` (written when the
database was created, never changed afterwards) tells two independently created databases
apart, while a restored snapshot of the *same* database keeps it, so restores are not flagged.

The fingerprint is read (read-only, well under a millisecond) only when the file changed since
it was last read in this process, and compared with the one the session saw first.
"""

from __future__ import annotations

import sqlite3
import threading

from django.dispatch import receiver
from django.http import HttpRequest

from dbselect.engines.cache import Engine
from dbselect.files.paths import PathRejected, bounded
from dbselect.files.validation import FileIdentity, ValidationFailed, open_readonly, read_header
from dbselect.signals import database_switched

SESSION_KEY = "selected_db_fingerprint"
REPLACED = "The database file was overwritten by a different database."

_lock = threading.Lock()
# path -> (identity of the file when read, its fingerprint)
_cache: dict[str, tuple[FileIdentity | None, str | None]] = {}


def read_fingerprint(path: str) -> str | None:
    """Return the creation mark of the database at `path`, or None when it cannot be read."""
    try:
        header, _ = read_header(path)

        def _read() -> str | None:
            conn = open_readonly(path, header)
            try:
                row = conn.execute(
                    "SELECT id, app, name, applied FROM django_migrations ORDER BY id LIMIT 1"
                ).fetchone()
            finally:
                conn.close()
            return "|".join(str(v) for v in row) if row else None

        return bounded(_read)
    except (ValidationFailed, PathRejected, sqlite3.Error):
        # Unreadable right now (locked, damaged): other checks handle those; do not guess.
        return None


def current_fingerprint(engine: Engine) -> str | None:
    """Return the fingerprint of the engine's file, re-read only when the file changed."""
    identity = engine.identity
    cached = _cache.get(engine.path)
    if cached is not None and identity is not None and cached[0] == identity:
        return cached[1]
    fingerprint = read_fingerprint(engine.path)
    if fingerprint is not None:
        with _lock:
            _cache[engine.path] = (identity, fingerprint)
    return fingerprint


def replaced(request: HttpRequest, engine: Engine) -> bool:
    """Return True when the session's database is no longer the one it selected."""
    fingerprint = current_fingerprint(engine)
    if fingerprint is None:
        return False
    seen = request.session.get(SESSION_KEY)
    if not seen or seen[0] != engine.path:
        request.session[SESSION_KEY] = [engine.path, fingerprint]
        return False
    return seen[1] != fingerprint


@receiver(database_switched)
def _forget_on_switch(sender: object, request: HttpRequest, **kwargs: object) -> None:
    """A new selection (even of the same path) accepts the file as it is now."""
    request.session.pop(SESSION_KEY, None)
