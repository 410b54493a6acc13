"""What is inside a PostgreSQL database of the catalog, and is it sound: the PostgreSQL side of
inspection.contents (`dbinspect`, the details page) and inspection.checking (`dbcheck`, the
details page's full check).

Everything runs in one read-only REPEATABLE READ transaction of one connection with the
catalog entry's credentials (dbselect.catalog.postgres.connect: default_transaction_read_only),
so every figure describes one moment of a live database and nothing is ever written. Views and
triggers are listed, never run; foreign tables are listed, never queried (their wrapper would
connect elsewhere).

- Contents: tables with exact row counts (`count(*)`, under the caller's time budget; what did
  not fit is left as None), sizes from `pg_total_relation_size` (the table with its indexes and
  TOAST; read from the catalog, no table is scanned) and `pg_relation_size` for indexes, the
  database's size (`pg_database_size`), encoding, server version, display name, seed and schema
  state (dbselect.catalog.postgres.inspect).
- Check: PostgreSQL keeps its own structures consistent (WAL, checksums when enabled) and
  `amcheck` is an extension a database may not have, so the check is what an application can
  verify with plain SQL: every table is readable to its end (`count(*)`; with `full`, every
  value too, TOAST included, by turning every row into text), no foreign key constraint is left
  NOT VALID, and no row points at a missing row (each foreign key checked with an anti-join:
  rows written with triggers disabled, e.g. `session_replication_role = replica`, escape the
  constraint). The SQLite-only checks (page structure, free list) do not apply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from dbselect.catalog import CatalogEntry, postgres
from dbselect.files.validation import SETTINGS_TABLE, ValidationFailed
from inspection.checking import MAX_LISTED, CheckResult, ForeignKeyViolation
from inspection.contents import (
    SETTINGS_KEYS,
    Column,
    ForeignKey,
    IndexInfo,
    Inspection,
    TableDetail,
    TableInfo,
    TriggerInfo,
    ViewInfo,
)

KIND = "postgresql"
SIZES_SOURCE = "pg_total_relation_size"
READ_CHECK = "read_check"
FULL_READ_CHECK = "full_read_check"
# pg_constraint.confupdtype / confdeltype
_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

Progress = Callable[[int, int], None]


class _Deadline:
    def __init__(self, seconds: float | None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds

    @property
    def expired(self) -> bool:
        return self.at is not None and time.monotonic() > self.at

    def remaining_ms(self) -> int:
        """Milliseconds left (0: no limit), at least 1 while not expired."""
        if self.at is None:
            return 0
        return max(1, int((self.at - time.monotonic()) * 1000))


@contextmanager
def _connect(entry: CatalogEntry) -> Iterator[psycopg.Connection]:
    """One read-only connection whose transactions are REPEATABLE READ (one moment)."""
    with postgres.connect(entry.url, readonly=True) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        yield conn


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _relations(conn: psycopg.Connection) -> list[tuple[int, str, str]]:
    """(oid, name, relkind) of the tables, views and foreign tables of the current schema."""
    return [
        (int(oid), str(name), str(kind))
        for oid, name, kind in conn.execute(
            "SELECT c.oid, c.relname, c.relkind FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'f', 'v', 'm') "
            "ORDER BY c.relname"
        )
    ]


def _table_ddl(conn: psycopg.Connection, oids: list[int]) -> dict[int, str]:
    """A CREATE TABLE statement per table (columns, defaults and constraints)."""
    columns: dict[int, list[str]] = {oid: [] for oid in oids}
    for relid, name, type_, not_null, default, generated in conn.execute(
        "SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid), a.attgenerated "
        "FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d "
        "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attrelid, a.attnum",
        (oids,),
    ):
        line = f"{sql.Identifier(name).as_string(conn)} {type_}"
        if default is not None:
            line += (
                f" GENERATED ALWAYS AS ({default}) STORED"
                if generated == "s"
                else f" DEFAULT {default}"
            )
        if not_null:
            line += " NOT NULL"
        columns[int(relid)].append(line)
    for relid, name, definition in conn.execute(
        "SELECT conrelid, conname, pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint "
        "WHERE conrelid = ANY(%s) ORDER BY conrelid, contype DESC, conname",
        (oids,),
    ):
        columns[int(relid)].append(
            f"CONSTRAINT {sql.Identifier(name).as_string(conn)} {definition}"
        )
    return {oid: ",\n    ".join(lines) for oid, lines in columns.items()}


def inspect(
    entry: CatalogEntry, *, label: str | None = None, time_budget: float | None = None
) -> Inspection:
    """Inspect the PostgreSQL database of `entry`, read-only (see the module docstring).

    Raise psycopg.Error when the server cannot be reached or the catalog read at all.
    """
    started = time.monotonic()
    try:
        info = postgres.inspect(entry.target, entry.url)
        state, problem = info.state, ""
    except ValidationFailed as exc:
        info, state, problem = None, None, exc.reason
    deadline = _Deadline(time_budget)
    with _connect(entry) as conn, conn.transaction():
        result = _read(conn, entry, deadline)
    result.label = label if label is not None else entry.label
    result.schema_state = state.value if state is not None else None
    result.schema_state_label = state.label if state is not None else "Refused by validation"
    result.schema_problem = problem
    if info is not None:
        result.display_name = info.display_name or result.display_name
        result.seed_status = info.seed_status or result.seed_status
    result.display_name = result.display_name or entry.display_name or None
    result.seconds = time.monotonic() - started
    return result


def _read(conn: psycopg.Connection, entry: CatalogEntry, deadline: _Deadline) -> Inspection:
    size, encoding, version, block = conn.execute(
        "SELECT pg_database_size(current_database()), "
        "pg_encoding_to_char(d.encoding), current_setting('server_version'), "
        "current_setting('block_size')::int "
        "FROM pg_catalog.pg_database d WHERE d.datname = current_database()"
    ).fetchone()
    result = Inspection(
        path=entry.target,
        label=entry.label,
        display_name=None,
        schema_state=None,
        schema_state_label="",
        schema_problem="",
        seed_name=None,
        seed_version=None,
        seed_status=None,
        file_bytes=int(size),
        wal_bytes=0,
        page_size=int(block),
        page_count=0,
        freelist_count=0,
        journal_mode="",
        encoding=str(encoding),
        auto_vacuum="",
        user_version=0,
        sqlite_version="",
        sizes_source=SIZES_SOURCE,
        kind=KIND,
        server=entry.url.server(),
        server_version=str(version),
    )
    relations = _relations(conn)
    tables = {oid: name for oid, name, kind in relations if kind in ("r", "p", "f")}
    ddl = _table_ddl(conn, list(tables))
    sizes = dict(
        conn.execute(
            "SELECT c.oid, pg_total_relation_size(c.oid) FROM pg_catalog.pg_class c "
            "WHERE c.oid = ANY(%s)",
            (list(tables),),
        ).fetchall()
    )
    for oid, name, kind in relations:
        if kind in ("v", "m"):
            definition = conn.execute("SELECT pg_get_viewdef(%s::oid, true)", (oid,)).fetchone()
            materialized = "MATERIALIZED " if kind == "m" else ""
            result.views.append(
                ViewInfo(name, f"CREATE {materialized}VIEW {name} AS\n{definition[0]}")
            )
            continue
        table = TableInfo(
            name,
            {"r": "table", "p": "partitioned", "f": "foreign"}[kind],
            bytes=int(sizes.get(oid) or 0),
            sql=f"CREATE TABLE {sql.Identifier(name).as_string(conn)} (\n    {ddl[oid]}\n)",
        )
        if kind == "f":
            table.note = "foreign table: not queried"
        result.tables.append(table)
    for name, table, unique, automatic, definition, size in conn.execute(
        "SELECT i.relname, t.relname, x.indisunique, "
        "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.oid "
        "AND k.contype IN ('p', 'u', 'x')), pg_get_indexdef(i.oid), pg_relation_size(i.oid) "
        "FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_catalog.pg_class t ON t.oid = x.indrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = current_schema() ORDER BY i.relname"
    ):
        result.indexes.append(
            IndexInfo(
                str(name),
                str(table),
                unique=bool(unique),
                automatic=bool(automatic),
                bytes=int(size),
                sql=str(definition),
            )
        )
    for name, table, definition in conn.execute(
        "SELECT g.tgname, c.relname, pg_get_triggerdef(g.oid) FROM pg_catalog.pg_trigger g "
        "JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND NOT g.tgisinternal ORDER BY g.tgname"
    ):
        result.triggers.append(TriggerInfo(str(name), str(table), str(definition)))
    _settings(conn, result)
    _count_rows(conn, result, deadline)
    if deadline.expired or any(t.note.startswith("not counted") for t in result.tables):
        result.incomplete = True
        result.notes.append(
            "Row counts not computed within the time budget are left out "
            "(`manage.py dbinspect` computes them all)."
        )
    return result


def _settings(conn: psycopg.Connection, result: Inspection) -> None:
    """Display name and seed from system_settings, when it is a plain table."""
    table = result.table(SETTINGS_TABLE)
    if table is None or table.kind != "table":
        return
    try:
        with conn.transaction():
            stored = dict(
                conn.execute(
                    sql.SQL("SELECT key, value FROM {} WHERE key = ANY(%s)").format(
                        sql.Identifier(SETTINGS_TABLE)
                    ),
                    (list(SETTINGS_KEYS),),
                ).fetchall()
            )
    except psycopg.Error:
        return
    result.take_settings(stored)


def _count_rows(conn: psycopg.Connection, result: Inspection, deadline: _Deadline) -> None:
    for table in result.tables:
        if table.kind == "foreign":
            continue
        if deadline.expired:
            table.note = "not counted within the time budget"
            continue
        try:
            with conn.transaction():  # a savepoint: one failed count spoils nothing else
                conn.execute(
                    sql.SQL("SET LOCAL statement_timeout = {}").format(
                        sql.Literal(deadline.remaining_ms())
                    )
                )
                counted = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))
                ).fetchone()
            table.rows = int(counted[0])
        except psycopg.errors.QueryCanceled:
            table.note = "not counted within the time budget"
        except psycopg.Error as exc:
            table.note = f"unreadable: {_first_line(exc)}"


def table_detail(entry: CatalogEntry, inspection: Inspection, name: str) -> TableDetail:
    """Return the columns, indexes, foreign keys and triggers of the table `name`.

    Raise LookupError when the database has no such table.
    """
    table = inspection.table(name)
    if table is None:
        known = ", ".join(t.name for t in inspection.tables) or "none"
        raise LookupError(f"No table {name!r} in {entry.label} (tables: {known}).")
    with _connect(entry) as conn, conn.transaction():
        oid = conn.execute(
            "SELECT c.oid FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = %s",
            (name,),
        ).fetchone()[0]
        primary = {
            int(attnum): position
            for attnum, position in conn.execute(
                "SELECT k.attnum, k.ord FROM pg_catalog.pg_constraint c, "
                "unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) "
                "WHERE c.conrelid = %s AND c.contype = 'p'",
                (oid,),
            )
        }
        columns = [
            Column(
                cid=int(attnum),
                name=str(attname),
                type=str(type_),
                not_null=bool(not_null),
                default=None if default is None else str(default),
                primary_key=int(primary.get(int(attnum), 0)),
                hidden=3 if generated == "s" else 0,
            )
            for attnum, attname, type_, not_null, default, generated in conn.execute(
                "SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), "
                "a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attgenerated "
                "FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d "
                "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum",
                (oid,),
            )
        ]
        by_number = {c.cid: c.name for c in columns}
        indexes: list[dict[str, Any]] = []
        for index_name, unique, primary_key, constraint, partial, keys in conn.execute(
            "SELECT i.relname, x.indisunique, x.indisprimary, "
            "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.oid "
            "AND k.contype = 'u'), x.indpred IS NOT NULL, x.indkey::int2[] "
            "FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = %s ORDER BY i.relname",
            (oid,),
        ):
            known = next((i for i in inspection.indexes if i.name == index_name), None)
            indexes.append(
                {
                    "name": str(index_name),
                    "unique": bool(unique),
                    "origin": "pk" if primary_key else ("u" if constraint else "c"),
                    "partial": bool(partial),
                    "columns": [by_number.get(int(k), "<expression>") for k in keys],
                    "bytes": known.bytes if known else None,
                }
            )
        keys = []
        for parent, conkey, confkey, on_update, on_delete, parent_oid in conn.execute(
            "SELECT c.confrelid::regclass::text, c.conkey, c.confkey, c.confupdtype, "
            "c.confdeltype, c.confrelid FROM pg_catalog.pg_constraint c "
            "WHERE c.conrelid = %s AND c.contype = 'f' ORDER BY c.conname",
            (oid,),
        ):
            parent_columns = dict(
                conn.execute(
                    "SELECT attnum, attname FROM pg_catalog.pg_attribute WHERE attrelid = %s",
                    (parent_oid,),
                ).fetchall()
            )
            keys.append(
                ForeignKey(
                    columns=[by_number.get(int(k), str(k)) for k in conkey],
                    table=str(parent),
                    references=[parent_columns.get(int(k)) for k in confkey],
                    on_update=_ACTIONS.get(str(on_update), str(on_update)),
                    on_delete=_ACTIONS.get(str(on_delete), str(on_delete)),
                )
            )
    triggers = [t for t in inspection.triggers if t.table == name]
    return TableDetail(table, columns, indexes, keys, triggers)


# -- the check ---------------------------------------------------------------------------------


def run_check(entry: CatalogEntry, *, full: bool = False, progress: Progress | None = None):
    """Check the PostgreSQL database of `entry` (see the module docstring); never raises a
    psycopg error: what prevented the check is the result's `error`."""
    mode = FULL_READ_CHECK if full else READ_CHECK
    result = CheckResult(path=entry.target, mode=mode)
    started = time.monotonic()
    try:
        with _connect(entry) as conn, conn.transaction():
            _check(conn, result, full=full, progress=progress)
    except psycopg.Error as exc:
        result.error = result.error or postgres.describe_error(exc)
    result.seconds = time.monotonic() - started
    return result


def _check(
    conn: psycopg.Connection, result: CheckResult, *, full: bool, progress: Progress | None
) -> None:
    tables = [name for _, name, kind in _relations(conn) if kind in ("r", "p")]
    foreign_keys = conn.execute(
        "SELECT c.conname, c.convalidated, c.conrelid, c.confrelid, c.conkey, c.confkey "
        "FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class t ON t.oid = c.conrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = current_schema() AND c.contype = 'f' ORDER BY t.relname, c.conname"
    ).fetchall()
    total = max(len(tables) + len(foreign_keys), 1)
    done = 0
    for name in tables:
        table = sql.Identifier(name)
        query = (
            # Every value turned into text: every row read, every TOASTed value fetched.
            sql.SQL("SELECT count(*), sum(length(x::text)) FROM {} AS x").format(table)
            if full
            else sql.SQL("SELECT count(*) FROM {}").format(table)
        )
        try:
            with conn.transaction():
                conn.execute(query).fetchone()
        except psycopg.Error as exc:
            if len(result.integrity) < MAX_LISTED:
                result.integrity.append(f"{name}: cannot be read: {_first_line(exc)}")
        done += 1
        if progress is not None:
            progress(done, total)
    for name, validated, child, parent, conkey, confkey in foreign_keys:
        try:
            with conn.transaction():
                _foreign_key(
                    conn, result, str(name), bool(validated), child, parent, conkey, confkey
                )
        except psycopg.Error as exc:
            result.integrity.append(f"foreign key {name}: not checked: {_first_line(exc)}")
        done += 1
        if progress is not None:
            progress(done, total)
    if progress is not None:
        progress(total, total)


def _names(conn: psycopg.Connection, relid: int, numbers: list[int]) -> list[str]:
    names = dict(
        conn.execute(
            "SELECT attnum, attname FROM pg_catalog.pg_attribute WHERE attrelid = %s",
            (relid,),
        ).fetchall()
    )
    return [str(names[int(n)]) for n in numbers]


def _foreign_key(
    conn: psycopg.Connection,
    result: CheckResult,
    name: str,
    validated: bool,
    child: int,
    parent: int,
    conkey: list[int],
    confkey: list[int],
) -> None:
    """Count (and list) the rows whose foreign key `name` points at no row of its parent."""
    child_table, parent_table = (
        str(conn.execute("SELECT %s::oid::regclass::text", (oid,)).fetchone()[0])
        for oid in (child, parent)
    )
    if not validated:
        result.integrity.append(
            f"{child_table}: foreign key {name} is NOT VALID (PostgreSQL never checked the rows "
            "it held when it was added)"
        )
    columns = _names(conn, child, conkey)
    referenced = _names(conn, parent, confkey)
    primary = conn.execute(
        "SELECT a.attname FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_attribute a "
        "ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "WHERE c.conrelid = %s AND c.contype = 'p' AND cardinality(c.conkey) = 1",
        (child,),
    ).fetchone()
    row_id = sql.Identifier("c", primary[0]) if primary else sql.SQL("NULL")
    # MATCH SIMPLE, as PostgreSQL checks: a key with a NULL column points at nothing.
    not_null = sql.SQL(" AND ").join(
        sql.SQL("{} IS NOT NULL").format(sql.Identifier("c", c)) for c in columns
    )
    matches = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier("p", r), sql.Identifier("c", c))
        for c, r in zip(columns, referenced, strict=True)
    )
    query = sql.SQL(
        "SELECT {row_id}, count(*) OVER () FROM {child} AS c WHERE {not_null} AND NOT EXISTS "
        "(SELECT 1 FROM {parent} AS p WHERE {matches}) LIMIT {limit}"
    ).format(
        row_id=row_id,
        child=sql.SQL(child_table),  # regclass text: already quoted as needed
        parent=sql.SQL(parent_table),
        not_null=not_null,
        matches=matches,
        limit=sql.Literal(MAX_LISTED),
    )
    rows = conn.execute(query).fetchall()
    if not rows:
        return
    result.foreign_key_count += int(rows[0][1])
    for row_value, _ in rows:
        if len(result.foreign_keys) >= MAX_LISTED:
            break
        result.foreign_keys.append(
            ForeignKeyViolation(
                child_table,
                int(row_value) if isinstance(row_value, int) else None,
                parent_table,
                ", ".join(columns),
            )
        )
