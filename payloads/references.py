"""Which payloads a database file (live or a snapshot) references.

The apps whose rows name payloads register the table and column once (in their
AppConfig.ready); this module reads them from any SQLite file, read-only, without knowing those
apps. A file older than the table (a snapshot taken before attachments existed) references
none.
"""

from __future__ import annotations

import os
import sqlite3

from django.db import DatabaseError, connections

from dbselect.files.validation import ValidationFailed, open_readonly, read_header
from payloads.store import SHA256

_sources: list[tuple[str, str]] = []

__all__ = ["referenced_by_alias", "referenced_in_file", "register", "sources"]


def register(table: str, column: str) -> None:
    """Declare that `table`.`column` holds payload hashes."""
    if (table, column) not in _sources:
        _sources.append((table, column))


def sources() -> list[tuple[str, str]]:
    """Return the registered (table, column) pairs."""
    return list(_sources)


def _query(table: str, column: str) -> str:
    return f'SELECT DISTINCT "{column}" FROM "{table}"'


def _clean(values: object) -> set[str]:
    return {v for (v,) in values if isinstance(v, str) and SHA256.match(v)}  # type: ignore[attr-defined]


def referenced_in_file(path: str | os.PathLike[str]) -> set[str]:
    """Return the hashes the SQLite file at `path` references (read-only, creates nothing).

    For files this process does not work on (snapshots, copies, bundles). Raise
    sqlite3.Error when the file cannot be read.
    """
    path = str(path)
    try:
        header, _ = read_header(path)
    except ValidationFailed as exc:
        raise sqlite3.DatabaseError(str(exc)) from None
    conn = open_readonly(path, header)
    try:
        found: set[str] = set()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, column in _sources:
            if table in tables:
                found |= _clean(conn.execute(_query(table, column)).fetchall())
        return found
    finally:
        conn.close()


def referenced_by_alias(alias: str) -> set[str]:
    """Return the hashes the database behind the Django alias `alias` references."""
    found: set[str] = set()
    connection = connections[alias]
    tables = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        for table, column in _sources:
            if table not in tables:
                continue
            try:
                cursor.execute(_query(table, column))
            except (DatabaseError, sqlite3.Error):
                continue
            found |= _clean(cursor.fetchall())
    return found
