"""The defaults list: every databases/<label>/nukeworks.sqlite of the project, and every
PostgreSQL database an operator registered in the catalog (dbselect.catalog)."""

from __future__ import annotations

import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from dbselect import catalog
from dbselect.catalog import postgres
from dbselect.conf import get_config
from dbselect.files.paths import PathRejected, bounded
from dbselect.files.schema import SchemaState
from dbselect.files.validation import (
    DatabaseInfo,
    ValidationFailed,
    inspect_database,
    not_ready_reason,
    open_readonly,
)
from dbselect.layout import preparing

# Rows counted at most in a database's main table (DBSELECT["EMPTY_MARKER_TABLE"]): the
# selector shows "10,000+" beyond, so listing a huge database never scans its table.
COUNT_LIMIT = 10_000
# Seconds the selector may spend counting one file's rows.
COUNT_TIME_LIMIT = 0.5


@dataclass(frozen=True)
class ScannedDatabase:
    """One database found by the scanner."""

    label: str
    path: str
    display_name: str
    state: SchemaState | None
    error: str | None
    is_empty: bool = False
    # A database being built in the background (no file yet): its marker (dbselect.layout).
    preparing: dict | None = None
    # A file whose building never finished (seed_status not "ready"): never served.
    not_ready: bool = False
    # Where its progress is followed (filled by the selector view, DBSELECT["PREPARING_URL"]).
    progress_url: str = ""
    # "sqlite", or "postgresql" for a catalog entry (`path` is then its target).
    kind: str = "sqlite"
    # Where it lives, as people may see it: host:port/dbname of a PostgreSQL database.
    location: str = ""
    # Its size in bytes (a file's, or pg_database_size), None when unknown.
    size: int | None = None
    # When the file was last written (seconds since the epoch), None for PostgreSQL.
    modified: float | None = None
    # Rows of its main table (DBSELECT["EMPTY_MARKER_TABLE"]), at most COUNT_LIMIT + 1 (shown
    # as "10,000+"); an estimate for PostgreSQL; None when not cheaply known.
    count: int | None = None
    # True when `count` is PostgreSQL's estimate (pg_class.reltuples).
    count_estimated: bool = False

    @property
    def usable(self) -> bool:
        return self.state is SchemaState.UP_TO_DATE and self.error is None


def database_files(root: Path | None = None) -> list[tuple[str, str]]:
    """Return (label, absolute path) for each databases/<label>/nukeworks.sqlite, by label."""
    config = get_config()
    root = Path(root or config["DATABASES_DIR"])
    filename = config["DATABASE_FILENAME"]
    found = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        candidate = os.path.join(entry.path, filename)
        if os.path.isfile(candidate):
            found.append((entry.name, os.path.normpath(os.path.abspath(candidate))))
    return found


def labelled_path(label: str, root: Path | None = None) -> str:
    """Return the absolute path of the database labelled `label` in the catalog.

    Raise LookupError, with a message naming the known labels, when there is none.
    """
    files = dict(database_files(root))
    if label not in files:
        known = ", ".join(sorted(files)) or "none"
        raise LookupError(f"No database labelled {label!r} (known labels: {known}).")
    return files[label]


def preparing_databases(root: Path | None = None) -> list[tuple[str, str, dict]]:
    """Return (label, future path, marker) for each label folder being prepared, by label.

    A database is being prepared while its folder holds the marker (dbselect.layout) and no
    database file yet.
    """
    config = get_config()
    root = Path(root or config["DATABASES_DIR"])
    filename = config["DATABASE_FILENAME"]
    found = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        candidate = os.path.join(entry.path, filename)
        if os.path.lexists(candidate):
            continue
        marker = preparing(entry.path)
        if marker is not None:
            found.append((entry.name, os.path.normpath(os.path.abspath(candidate)), marker))
    return found


def preparing_at(path: object) -> tuple[str, dict] | None:
    """Return (label, marker) when `path` names databases/<label>/<file> being prepared."""
    if not isinstance(path, str) or not path or "\x00" in path:
        return None
    config = get_config()
    root = os.path.normpath(os.path.abspath(config["DATABASES_DIR"]))
    candidate = os.path.normpath(path)
    folder, name = os.path.split(candidate)
    if name != config["DATABASE_FILENAME"] or os.path.dirname(folder) != root:
        return None
    label = os.path.basename(folder)
    if label.startswith(".") or os.path.lexists(candidate):
        return None
    marker = preparing(folder)
    return (label, marker) if marker is not None else None


def scan(root: Path | None = None) -> list[ScannedDatabase]:
    """Validate each project database read-only and return it with its friendly name.

    Databases being prepared are listed too (state None, `preparing` set), in label order.
    """
    results = []
    for label, path in database_files(root):
        try:
            info = inspect_database(path)
        except ValidationFailed as exc:
            size, modified = file_stat(path)
            results.append(
                ScannedDatabase(label, path, label, None, exc.reason, size=size, modified=modified)
            )
            continue
        # A file whose building never finished is never served (seed_status).
        not_ready = not_ready_reason(info)
        if info.identity is not None:
            size, modified = info.identity.size, info.identity.mtime_ns / 1e9
        else:
            size, modified = file_stat(path)
        results.append(
            ScannedDatabase(
                label=label,
                path=path,
                display_name=info.display_name or label,
                state=info.state,
                error=not_ready,
                is_empty=info.is_empty,
                not_ready=not_ready is not None,
                size=size,
                modified=modified,
                count=_count_rows(info),
            )
        )
    for label, path, marker in preparing_databases(root):
        name = marker.get("display_name") or label
        results.append(ScannedDatabase(label, path, name, None, None, preparing=marker))
    if root is None:
        results.extend(scan_catalog())
    return sorted(results, key=lambda db: db.label)


def file_stat(path: str) -> tuple[int | None, float | None]:
    """Return (size in bytes, last modification time) of the file at `path`, or Nones when
    it cannot be read in time (a network share that stops answering)."""
    try:
        st = bounded(lambda: os.stat(path), timeout=1.0)
    except (OSError, PathRejected):
        return None, None
    return st.st_size, st.st_mtime


def _count_rows(info: DatabaseInfo) -> int | None:
    """Count the rows of the file's main table, at most COUNT_LIMIT + 1, read-only.

    None when the file has no such table (or not a known schema) or the count takes longer
    than COUNT_TIME_LIMIT: the selector then shows no count.
    """
    table = get_config()["EMPTY_MARKER_TABLE"]
    if not table or info.state is SchemaState.NOT_NUKEWORKS:
        return None
    if info.is_empty:
        return 0
    quoted = table.replace('"', '""')
    query = f'SELECT count(*) FROM (SELECT 1 FROM "{quoted}" LIMIT {COUNT_LIMIT + 1})'

    def _count() -> int:
        conn = open_readonly(info.path, info.header)
        deadline = time.monotonic() + COUNT_TIME_LIMIT
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            return int(conn.execute(query).fetchone()[0])
        finally:
            conn.close()

    try:
        return bounded(_count, timeout=COUNT_TIME_LIMIT + 1.0)
    except (sqlite3.Error, PathRejected, OSError):
        return None


def scan_catalog() -> list[ScannedDatabase]:
    """Validate each registered PostgreSQL database read-only, all at once (one slow or
    unreachable server costs its connect timeout once, not once per entry)."""
    try:
        entries = catalog.entries()
    except Exception as exc:  # the catalog's Redis is down: the files are still listed
        return [
            ScannedDatabase(
                "catalog", "", "PostgreSQL catalog", None,
                f"The catalog of PostgreSQL databases cannot be read ({type(exc).__name__}).",
                kind=catalog.KIND,
            )
        ]  # fmt: skip
    if not entries:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(entries))) as pool:
        return list(pool.map(_scan_entry, entries))


def _pg_figures(conn: psycopg.Connection) -> tuple[int | None, int | None, bool]:
    """Return (database size, rows of the main table, whether they are an estimate) through an
    open connection.

    The estimate is pg_class.reltuples (kept by ANALYZE and autovacuum); a table never
    analysed yet (-1) is counted, at most COUNT_LIMIT + 1 rows.
    """
    size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
    table = get_config()["EMPTY_MARKER_TABLE"]
    if not table:
        return size, None, False
    row = conn.execute(
        "SELECT reltuples FROM pg_catalog.pg_class WHERE oid = to_regclass(%s)",
        (sql.Identifier(table).as_string(conn),),
    ).fetchone()
    if row is None:
        return size, None, False
    if row[0] is not None and row[0] >= 0:
        return size, int(row[0]), True
    counted = conn.execute(
        sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) AS bounded").format(
            sql.Identifier(table)
        ),
        (COUNT_LIMIT + 1,),
    ).fetchone()
    return size, int(counted[0]), False


def _inspect_entry(
    entry: catalog.CatalogEntry,
) -> tuple[DatabaseInfo, int | None, int | None, bool]:
    """Validate a catalog entry read-only as postgres.inspect does, and read its size and row
    estimate through the same short connection (one connection per entry, as before)."""
    try:
        with postgres.connect(
            entry.url, readonly=True, timeout_ms=postgres.INSPECT_STATEMENT_TIMEOUT_MS
        ) as conn:
            info = postgres.inspect_open(conn, entry.target)
            try:
                figures = _pg_figures(conn)
            except psycopg.Error:  # figures are a nicety: the validation stands
                conn.rollback()
                figures = (None, None, False)
            return (info, *figures)
    except psycopg.Error as exc:
        raise ValidationFailed(postgres.describe_error(exc)) from None


def _scan_entry(entry: catalog.CatalogEntry) -> ScannedDatabase:
    where = entry.url.server()
    try:
        info, size, count, estimated = _inspect_entry(entry)
    except ValidationFailed as exc:
        return ScannedDatabase(
            entry.label, entry.target, entry.display_name or entry.label, None, exc.reason,
            kind=catalog.KIND, location=where,
        )  # fmt: skip
    not_ready = not_ready_reason(info)
    return ScannedDatabase(
        label=entry.label,
        path=entry.target,
        display_name=info.display_name or entry.display_name or entry.label,
        state=info.state,
        error=not_ready,
        is_empty=info.is_empty,
        not_ready=not_ready is not None,
        kind=catalog.KIND,
        location=where,
        size=size,
        count=count,
        count_estimated=estimated,
    )
