"""DatabaseWrapper: Django's SQLite wrapper, opening the file with mode=rw."""

from __future__ import annotations

import urllib.parse
from typing import Any

from django.db.backends.sqlite3 import base


def no_create_uri(path: str) -> str:
    """Return a SQLite URI that opens `path` for reading and writing but never creates it."""
    # An empty authority keeps a UNC-style //server/share path from being read as a host.
    return f"file://{urllib.parse.quote(path, safe='/')}?mode=rw"


class DatabaseWrapper(base.DatabaseWrapper):
    """SQLite connections to files that must already exist."""

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        name = str(params["database"])
        if not name.startswith("file:") and name != ":memory:":
            params["database"] = no_create_uri(name)
        return params
