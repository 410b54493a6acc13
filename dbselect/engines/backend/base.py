"""DatabaseWrapper: Django's SQLite wrapper, opening the file with mode=rw, within the bound."""

from __future__ import annotations

from typing import Any

from django.db.backends.sqlite3 import base

from dbselect.engines import connections as tracking
from dbselect.engines import live_files
from dbselect.files.paths import sqlite_uri


class DatabaseWrapper(base.DatabaseWrapper):
    """SQLite connections to files that must already exist."""

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        name = str(params["database"])
        if not name.startswith("file:") and name != ":memory:":
            # mode=rw: opens the file for reading and writing but never creates it.
            params["database"] = sqlite_uri(name, "rw")
        # First lock and close under the file's guard: SQLite's own close() can otherwise
        # release the lock another thread's new connection has just taken, and the other
        # worker then deletes the WAL under this one (dbselect.engines.live_files).
        params["factory"] = live_files.GuardedConnection
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        # Room first, then the file: a server thread never holds more than
        # MAX_CONNECTIONS_PER_THREAD open files, not even for the rest of a request.
        tracking.make_room(self.alias)
        return super().get_new_connection(conn_params)
