"""What is inside a database file: tables with row counts and sizes, indexes, triggers, views,
page size, journal mode, freelist, schema state, display name and seed.

The file is untrusted. It is opened read-only through dbselect's validation
(`open_readonly`: `mode=ro`, or `immutable=1` for a checkpointed WAL file so nothing is
created beside it; `trusted_schema=OFF`, `query_only=ON`, limits; a GuardedConnection, so it
is safe on a file this process works on). Only plain tables are read, and only with
`count(*)` and SQLite's own `dbstat` table: triggers and views are listed, never run, and
virtual tables are listed but never queried (their module would run).

Sizes come from `dbstat` (every page of every b-tree, exact) when SQLite has it (Python's
sqlite3 on Debian does: SQLITE_ENABLE_DBSTAT_VTAB); otherwise each table's size is estimated
from a sample of its rows and `sizes_source` says "estimate".

Counting rows and summing pages read the whole file. `time_budget` bounds the work (the
details page gives it about two seconds): what did not fit is left as None and `incomplete`
says so.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bundles import newdb
from dbselect import engines
from dbselect.files.validation import (
    DISPLAY_NAME_KEY,
    SETTINGS_TABLE,
    SqliteHeader,
    ValidationFailed,
    inspect_database,
    needs_immutable,
    open_readonly,
)
from dbselect.layout import catalog_label

# SQLite virtual-machine steps between two looks at the deadline.
_PROGRESS_STEPS = 10_000
# Rows sampled per table for a size estimate (without dbstat).
_SAMPLE_ROWS = 200
# Share of a page that rows fill on average (b-tree pages are rarely full).
_FILL = 0.85
SEED_KEYS = (newdb.SEED_NAME, newdb.SEED_VERSION, newdb.SEED_STATUS)
# The rows of system_settings an inspection shows (Inspection.take_settings).
SETTINGS_KEYS = (*SEED_KEYS, DISPLAY_NAME_KEY)


class OutOfTime(Exception):
    """The time budget ran out (internal)."""


@dataclass
class TableInfo:
    """One table (or virtual table) of the file."""

    name: str
    # "table", "without rowid" or "virtual".
    kind: str
    rows: int | None = None
    bytes: int | None = None
    pages: int | None = None
    sql: str = ""
    # Why `rows` is missing ("virtual table: not queried", "not counted within the time
    # budget", SQLite's error on a damaged table…).
    note: str = ""


@dataclass
class IndexInfo:
    """One index; `automatic` for those SQLite makes for UNIQUE / PRIMARY KEY constraints."""

    name: str
    table: str
    unique: bool
    automatic: bool
    bytes: int | None = None
    pages: int | None = None
    sql: str = ""


@dataclass
class TriggerInfo:
    """A trigger defined by the file: listed, never run."""

    name: str
    table: str
    sql: str


@dataclass
class ViewInfo:
    """A view defined by the file: listed, never queried."""

    name: str
    sql: str


@dataclass
class Inspection:
    """What dbinspect shows of one database file."""

    path: str
    label: str | None
    display_name: str | None
    # dbselect's schema state (up_to_date, needs_migration, newer, not_nukeworks), or None
    # when validation refused the file (schema_problem says why).
    schema_state: str | None
    schema_state_label: str
    schema_problem: str
    seed_name: str | None
    seed_version: str | None
    seed_status: str | None
    file_bytes: int
    wal_bytes: int
    page_size: int
    page_count: int
    freelist_count: int
    journal_mode: str
    encoding: str
    auto_vacuum: str
    user_version: int
    sqlite_version: str
    # "dbstat" (exact), "estimate" (sampled rows) or "" (not computed).
    sizes_source: str
    tables: list[TableInfo] = field(default_factory=list)
    indexes: list[IndexInfo] = field(default_factory=list)
    triggers: list[TriggerInfo] = field(default_factory=list)
    views: list[ViewInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    incomplete: bool = False
    seconds: float = 0.0
    # "sqlite", or "postgresql" for a database of the catalog (inspection.postgres): its
    # `file_bytes` is then pg_database_size, `server` its host:port/dbname, and the SQLite
    # figures (pages, free list, journal mode, auto_vacuum, user_version) do not apply.
    kind: str = "sqlite"
    server: str = ""
    server_version: str = ""

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgresql"

    @property
    def freelist_bytes(self) -> int:
        return self.freelist_count * self.page_size

    @property
    def total_rows(self) -> int:
        return sum(t.rows or 0 for t in self.tables)

    def table(self, name: str) -> TableInfo | None:
        return next((t for t in self.tables if t.name == name), None)

    def take_settings(self, stored: dict[str, Any]) -> None:
        """Set the display name and seed from the SETTINGS_KEYS rows of system_settings."""

        def text(key: str) -> str | None:
            value = stored.get(key)
            return str(value)[:200] if value not in (None, "") else None

        self.seed_name = text(newdb.SEED_NAME)
        self.seed_version = text(newdb.SEED_VERSION)
        self.seed_status = text(newdb.SEED_STATUS)
        self.display_name = text(DISPLAY_NAME_KEY)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["freelist_bytes"] = self.freelist_bytes
        # {table: exact row count} (None for a virtual table or one not counted).
        data["row_counts"] = {t.name: t.rows for t in self.tables}
        return data


@dataclass
class Column:
    cid: int
    name: str
    type: str
    not_null: bool
    default: str | None
    primary_key: int
    # 0 ordinary, 1 hidden (virtual table), 2 generated virtual, 3 generated stored.
    hidden: int


@dataclass
class ForeignKey:
    columns: list[str]
    table: str
    references: list[str | None]
    on_update: str
    on_delete: str


@dataclass
class TableDetail:
    """One table in depth (`dbinspect --table NAME`)."""

    table: TableInfo
    columns: list[Column]
    indexes: list[dict[str, Any]]
    foreign_keys: list[ForeignKey]
    triggers: list[TriggerInfo]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Budget:
    """A deadline that SQLite's progress handler enforces (OperationalError "interrupted")."""

    def __init__(self, conn: sqlite3.Connection, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds
        if self.deadline is not None:
            conn.set_progress_handler(self._expired, _PROGRESS_STEPS)

    def _expired(self) -> int:
        return int(self.expired)

    @property
    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def inspect_file(
    path: str,
    header: SqliteHeader | None,
    *,
    label: str | None = None,
    time_budget: float | None = None,
) -> Inspection:
    """Inspect the database file at `path` (its header already read: inspection.targets).

    Raise sqlite3.Error when SQLite cannot open or read its schema at all; a damaged table
    only loses its row count (its `note` says why).
    """
    started = time.monotonic()
    try:
        info = inspect_database(path)
        state, problem = info.state, ""
        display_name, seed_status = info.display_name, info.seed_status
    except ValidationFailed as exc:
        info, state, problem = None, None, exc.reason
        display_name = seed_status = None
    conn = open_readonly(path, header, timeout=10.0)
    budget = _Budget(conn, time_budget)
    try:
        conn.execute("BEGIN")  # one moment of the file for every figure below
        try:
            result = _read(conn, path, header, budget)
        finally:
            conn.set_progress_handler(None, 0)
            conn.execute("COMMIT")
    finally:
        conn.close()
    result.label = label if label is not None else catalog_label(path)
    result.schema_state = state.value if state is not None else None
    result.schema_state_label = state.label if state is not None else "Refused by validation"
    result.schema_problem = problem
    result.display_name = display_name or result.display_name
    result.seed_status = seed_status or result.seed_status
    result.seconds = time.monotonic() - started
    return result


def _pragma(conn: sqlite3.Connection, name: str) -> Any:
    row = conn.execute(f"PRAGMA {name}").fetchone()
    return row[0] if row else None


def _read(
    conn: sqlite3.Connection, path: str, header: SqliteHeader | None, budget: _Budget
) -> Inspection:
    page_size = int(_pragma(conn, "page_size"))
    journal = _journal_mode(conn, path, header)
    result = Inspection(
        path=path,
        label=None,
        display_name=None,
        schema_state=None,
        schema_state_label="",
        schema_problem="",
        seed_name=None,
        seed_version=None,
        seed_status=None,
        file_bytes=_file_size(path),
        wal_bytes=_file_size(path + "-wal"),
        page_size=page_size,
        page_count=int(_pragma(conn, "page_count")),
        freelist_count=int(_pragma(conn, "freelist_count")),
        journal_mode=journal,
        encoding=str(_pragma(conn, "encoding")),
        auto_vacuum={0: "none", 1: "full", 2: "incremental"}.get(
            int(_pragma(conn, "auto_vacuum")), "?"
        ),
        user_version=int(_pragma(conn, "user_version")),
        sqlite_version=sqlite3.sqlite_version,
        sizes_source="",
    )
    objects = conn.execute(
        "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name"
    ).fetchall()
    without_rowid = _without_rowid(conn)
    for kind, name, table, sql in objects:
        if kind == "table":
            if sql.upper().startswith("CREATE VIRTUAL"):
                result.tables.append(
                    TableInfo(name, "virtual", sql=sql, note="virtual table: not queried")
                )
            else:
                kind = "without rowid" if name in without_rowid else "table"
                result.tables.append(TableInfo(name, kind, sql=sql))
        elif kind == "index":
            result.indexes.append(
                IndexInfo(
                    name,
                    table,
                    unique=False,
                    automatic=name.startswith("sqlite_autoindex_"),
                    sql=sql,
                )
            )
        elif kind == "trigger":
            result.triggers.append(TriggerInfo(name, table, sql))
        elif kind == "view":
            result.views.append(ViewInfo(name, sql))
    result.tables.sort(key=lambda t: t.name)
    _unique_flags(conn, result)
    _settings(conn, result)
    _count_rows(conn, result, budget)
    _sizes(conn, result, budget)
    if budget.expired:
        result.incomplete = True
        result.notes.append(
            "Row counts or sizes not computed within the time budget are left out "
            "(`manage.py dbinspect` computes them all)."
        )
    return result


def _journal_mode(conn: sqlite3.Connection, path: str, header: SqliteHeader | None) -> str:
    """The file's journal mode. A WAL file without -wal/-shm is opened with immutable=1 (so
    nothing is created beside it), where SQLite reports "delete": the header says WAL then,
    or, for a file this process works on (no raw header), its engine's mode."""
    if header is not None:
        return "wal" if header.wal else str(_pragma(conn, "journal_mode") or "").lower()
    if needs_immutable(path, None):
        engine = engines.get(path)
        return engine.journal_mode.lower() if engine is not None else "unknown"
    return str(_pragma(conn, "journal_mode") or "").lower()


def _without_rowid(conn: sqlite3.Connection) -> set[str]:
    """Names of the WITHOUT ROWID tables (PRAGMA table_list reads the schema only)."""
    try:
        return {
            str(row[1])
            for row in conn.execute("PRAGMA main.table_list").fetchall()
            if row[4]  # wr
        }
    except sqlite3.Error:
        return set()


def _unique_flags(conn: sqlite3.Connection, result: Inspection) -> None:
    by_table: dict[str, dict[str, bool]] = {}
    for table in {i.table for i in result.indexes}:
        try:
            by_table[table] = {
                str(row[1]): bool(row[2])
                for row in conn.execute(f"PRAGMA index_list({_quote(table)})").fetchall()
            }
        except sqlite3.Error:
            by_table[table] = {}
    for index in result.indexes:
        index.unique = by_table.get(index.table, {}).get(index.name, False)


def _settings(conn: sqlite3.Connection, result: Inspection) -> None:
    """Display name and seed from system_settings, when it is a plain table."""
    table = result.table(SETTINGS_TABLE)
    if table is None or table.kind == "virtual":
        return
    try:
        stored = dict(
            conn.execute(
                f"SELECT key, value FROM {_quote(SETTINGS_TABLE)} WHERE key IN (?, ?, ?, ?)",
                SETTINGS_KEYS,
            ).fetchall()
        )
    except sqlite3.Error:
        return
    result.take_settings(stored)


def _count_rows(conn: sqlite3.Connection, result: Inspection, budget: _Budget) -> None:
    for table in result.tables:
        if table.kind == "virtual":
            continue
        if budget.expired:
            table.note = _not_counted(conn, table)
            continue
        try:
            counted = conn.execute(f"SELECT count(*) FROM {_quote(table.name)}").fetchone()
            table.rows = int(counted[0])
        except sqlite3.OperationalError as exc:
            table.note = _not_counted(conn, table) if budget.expired else f"unreadable: {exc}"
        except sqlite3.Error as exc:
            table.note = f"unreadable: {exc}"


def _not_counted(conn: sqlite3.Connection, table: TableInfo) -> str:
    """Say a table was not counted within the time budget, with a cheap estimate: its largest
    row id (one step down the table's b-tree; rows deleted since make it an upper bound)."""
    note = "not counted within the time budget"
    if table.kind != "table":
        return note
    conn.set_progress_handler(None, 0)
    try:
        largest = conn.execute(f"SELECT max(rowid) FROM {_quote(table.name)}").fetchone()[0]
    except sqlite3.Error:
        return note
    if largest is None:
        return note
    return f"about {int(largest):,} rows (its largest row id); {note}"


def dbstat_available(conn: sqlite3.Connection) -> bool:
    """Return True when this SQLite has the dbstat virtual table."""
    try:
        conn.execute("SELECT 1 FROM dbstat LIMIT 0").fetchall()
    except sqlite3.Error:
        return False
    return True


def _sizes(conn: sqlite3.Connection, result: Inspection, budget: _Budget) -> None:
    if budget.expired:
        return
    if not dbstat_available(conn):
        _estimate_sizes(conn, result, budget)
        return
    try:
        rows = conn.execute(
            "SELECT name, count(*), sum(pgsize) FROM dbstat GROUP BY name"
        ).fetchall()
    except sqlite3.Error as exc:
        if not budget.expired:  # else the note on the time budget says it
            result.notes.append(f"Sizes could not be read (dbstat: {exc}).")
        return
    sizes = {str(name): (int(pages), int(size)) for name, pages, size in rows}
    for item in (*result.tables, *result.indexes):
        if isinstance(item, TableInfo) and item.kind == "virtual":
            continue
        item.pages, item.bytes = sizes.get(item.name, (0, 0))
    result.sizes_source = "dbstat"


def _estimate_sizes(conn: sqlite3.Connection, result: Inspection, budget: _Budget) -> None:
    """Without dbstat: each table's rows times the mean size of a sample of its rows."""
    result.sizes_source = "estimate"
    result.notes.append(
        "This SQLite has no dbstat table: table sizes are estimated from a sample of "
        f"{_SAMPLE_ROWS} rows per table (index sizes are not known)."
    )
    usable = result.page_size * _FILL
    for table in result.tables:
        if table.kind == "virtual" or table.rows is None or budget.expired:
            continue
        try:
            columns = [
                str(row[1])
                for row in conn.execute(f"PRAGMA table_xinfo({_quote(table.name)})").fetchall()
                if not row[6]  # generated and hidden columns are never evaluated here
            ]
            per_row = 0.0
            if columns and table.rows:
                lengths = " + ".join(f"coalesce(length({_quote(c)}), 0)" for c in columns)
                mean = conn.execute(
                    f"SELECT avg({lengths}) FROM "
                    f"(SELECT {', '.join(_quote(c) for c in columns)} "
                    f"FROM {_quote(table.name)} LIMIT {_SAMPLE_ROWS})"
                ).fetchone()[0]
                # A record's header and the cell's own bytes: about two per column, plus 8.
                per_row = float(mean or 0) + 2 * len(columns) + 8
        except sqlite3.Error:
            continue
        table.pages = max(1, math.ceil(table.rows * per_row / usable))
        table.bytes = table.pages * result.page_size


def table_detail(
    path: str, header: SqliteHeader | None, inspection: Inspection, name: str
) -> TableDetail:
    """Return the columns, indexes, foreign keys and triggers of the table `name`.

    Raise LookupError when the file has no such table.
    """
    table = inspection.table(name)
    if table is None:
        known = ", ".join(t.name for t in inspection.tables) or "none"
        raise LookupError(f"No table {name!r} in {path} (tables: {known}).")
    conn = open_readonly(path, header, timeout=10.0)
    try:
        quoted = _quote(name)
        columns = [
            Column(
                cid=int(row[0]),
                name=str(row[1]),
                type=str(row[2] or ""),
                not_null=bool(row[3]),
                default=None if row[4] is None else str(row[4]),
                primary_key=int(row[5]),
                hidden=int(row[6]),
            )
            for row in conn.execute(f"PRAGMA table_xinfo({quoted})").fetchall()
        ]
        indexes = []
        for row in conn.execute(f"PRAGMA index_list({quoted})").fetchall():
            index_name = str(row[1])
            indexed = [
                str(c[2]) if c[2] is not None else "<expression>"
                for c in conn.execute(f"PRAGMA index_info({_quote(index_name)})").fetchall()
            ]
            known = next((i for i in inspection.indexes if i.name == index_name), None)
            indexes.append(
                {
                    "name": index_name,
                    "unique": bool(row[2]),
                    # c: CREATE INDEX, u: UNIQUE constraint, pk: PRIMARY KEY
                    "origin": str(row[3]),
                    "partial": bool(row[4]),
                    "columns": indexed,
                    "bytes": known.bytes if known else None,
                }
            )
        grouped: dict[int, ForeignKey] = {}
        for row in conn.execute(f"PRAGMA foreign_key_list({quoted})").fetchall():
            key = grouped.setdefault(
                int(row[0]), ForeignKey([], str(row[2]), [], str(row[5]), str(row[6]))
            )
            key.columns.append(str(row[3]))
            key.references.append(None if row[4] is None else str(row[4]))
    finally:
        conn.close()
    triggers = [t for t in inspection.triggers if t.table == name]
    return TableDetail(table, columns, indexes, list(grouped.values()), triggers)
