"""Notice a database file overwritten in place by a *different* NukeWorks database.

A file replaced by rename gets a new inode, which the engine cache notices. A file overwritten
in place (`sqlite3 .restore`, a backup-API copy, a tool writing into the same inode) keeps its
inode, and when the newcomer is a valid NukeWorks database, nothing else would tell the session
it now works on another database. The first row of `django_migrations` (written when the
database was created, never changed afterwards) tells two independently created databases
apart, while a restored snapshot of the *same* database keeps it, so restores are not flagged.

The fingerprint is read (read-only, well under a millisecond) only when the file changed since
it was last read in this process; the engine keeps it with the identity it was read at
(EngineCache.fingerprint).
"""

from __future__ import annotations

import sqlite3

from dbselect.files.paths import PathRejected, bounded
from dbselect.files.validation import ValidationFailed, open_readonly, read_header


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
