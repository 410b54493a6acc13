"""DatabaseWrapper: Django's SQLite wrapper, opening the file with mode=rw, within the bound."""

from __future__ import annotations

from typing import Any

from django.db.backends.sqlite3 import base

from dbselect.engines import connections as tracking
from dbselect.files.paths import sqlite_uri


class DatabaseWrapper(base.DatabaseWrapper):
    """SQLite connections to files that must already exist."""

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        name = str(params["database"])
        if not name.startswith("file:") and name != ":memory:":
            # mode=rw: opens the file for reading and writing but never creates it.
            params["database"] = sqlite_uri(name, "rw")
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        # Room first, then the file: a server thread never holds more than
        # MAX_CONNECTIONS_PER_THREAD open files, not even for the rest of a request.
        tracking.make_room(self.alias)
        return super().get_new_connection(conn_params)
