"""Talking to the PostgreSQL server of a catalog entry outside Django's connections.

`inspect(entry)` is validation for a PostgreSQL database: one short read-only connection
(`default_transaction_read_only`, a statement timeout) that reads `django_migrations` and two
settings, as `dbselect.files.validation` reads a file. The other functions are the server-side
operations that snapshots, restores and new databases need (CREATE/DROP/RENAME DATABASE,
closing every session on a database); they run on the server's `postgres` maintenance
database with the entry's own credentials.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from dbselect.catalog.dsn import PostgresURL
from dbselect.conf import get_config, setting
from dbselect.files.schema import SchemaState
from dbselect.files.validation import (
    DISPLAY_NAME_KEY,
    SEED_STATUS_KEY,
    SETTINGS_TABLE,
    DatabaseInfo,
    ValidationFailed,
    database_info,
)

logger = logging.getLogger("nukeworks.dbselect")

MAINTENANCE_DB = "postgres"
# What a connection refused during a restore's or migration's swap is reported as
# (dbselect.recovery answers it with the "under maintenance" 503, never a fallback).
MAINTENANCE_REASON = "An administrator is restoring this PostgreSQL database; try again soon."
# Milliseconds validation may spend on the server.
INSPECT_STATEMENT_TIMEOUT_MS = 2000


@contextmanager
def connect(
    url: PostgresURL, *, readonly: bool = False, autocommit: bool = False, timeout_ms: int = 0
) -> Iterator[psycopg.Connection]:
    """Open one connection to `url`'s database; closed when the block ends."""
    options = []
    if readonly:
        options.append("-c default_transaction_read_only=on")
    if timeout_ms:
        options.append(f"-c statement_timeout={int(timeout_ms)}")
    params = url.libpq_params()
    params.setdefault("connect_timeout", str(int(setting("POSTGRES_CONNECT_TIMEOUT"))))
    params.setdefault("application_name", "nukeworks")
    if options:
        params["options"] = " ".join(options)
    conn = psycopg.connect(autocommit=autocommit, **params)
    try:
        yield conn
    finally:
        conn.close()


def describe_error(exc: Exception) -> str:
    """Return a sentence for a PostgreSQL error, never echoing a password."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.OperationalError):
        if "password authentication failed" in message:
            return "The PostgreSQL server refused the catalog entry's user name or password."
        if "does not exist" in message:
            return f"The PostgreSQL database does not exist ({message})."
        if "is not currently accepting connections" in message or "restor" in message:
            return MAINTENANCE_REASON
        return f"The PostgreSQL server cannot be reached ({message})."
    return f"PostgreSQL refused the request ({message})."


def inspect(target: str, url: PostgresURL) -> DatabaseInfo:
    """Validate the PostgreSQL database at `url`, read-only; `target` names it in the result.

    Raise ValidationFailed when the server cannot be reached or the database read.
    """
    try:
        with connect(url, readonly=True, timeout_ms=INSPECT_STATEMENT_TIMEOUT_MS) as conn:
            return inspect_open(conn, target)
    except psycopg.Error as exc:
        raise ValidationFailed(describe_error(exc)) from None


def inspect_open(conn: psycopg.Connection, target: str) -> DatabaseInfo:
    """Validate through an open connection (snapshots read the schema state inside the
    transaction their dump reads)."""
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
        )
    }
    if "django_migrations" not in tables:
        return DatabaseInfo(target, SchemaState.NOT_NUKEWORKS, None, None, None)
    applied = {
        (str(app), str(name))
        for app, name in conn.execute("SELECT app, name FROM django_migrations")
    }
    stored: dict[str, object] = {}
    if SETTINGS_TABLE in tables:
        stored = dict(
            conn.execute(
                sql.SQL("SELECT key, value FROM {} WHERE key IN (%s, %s)").format(
                    sql.Identifier(SETTINGS_TABLE)
                ),
                (DISPLAY_NAME_KEY, SEED_STATUS_KEY),
            ).fetchall()
        )
    marker = get_config()["EMPTY_MARKER_TABLE"]
    is_empty = False
    if marker:
        is_empty = (
            marker not in tables
            or conn.execute(
                sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(marker))
            ).fetchone()
            is None
        )
    return database_info(target, applied, stored, is_empty)


def database_size(url: PostgresURL) -> int:
    """Return the size of `url`'s database on its server, in bytes."""
    with connect(url, readonly=True, timeout_ms=INSPECT_STATEMENT_TIMEOUT_MS) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


# -- server-side operations (snapshots, restores, new databases) -----------------------------


@contextmanager
def maintenance(url: PostgresURL) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the server's maintenance database, as the entry's user."""
    with connect(url.with_dbname(MAINTENANCE_DB), autocommit=True) as conn:
        yield conn


def database_exists(url: PostgresURL, dbname: str) -> bool:
    """Return True when the server of `url` has a database named `dbname`."""
    with maintenance(url) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            is not None
        )


def create_database(url: PostgresURL, dbname: str, *, template: str | None = None) -> None:
    """CREATE DATABASE `dbname` on the server of `url` (owned by its user, UTF-8)."""
    query = sql.SQL("CREATE DATABASE {} ENCODING 'UTF8'").format(sql.Identifier(dbname))
    if template:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with maintenance(url) as conn:
        conn.execute(query)


def drop_database(url: PostgresURL, dbname: str) -> None:
    """DROP DATABASE `dbname` if it exists, closing its sessions first (FORCE)."""
    with maintenance(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


@contextmanager
def _on_server(server: PostgresURL | psycopg.Connection) -> Iterator[psycopg.Connection]:
    """Use `server` when it is an open connection to the server (autocommit, or in the
    caller's transaction: snapshots.pg's swap), else open a maintenance connection to it."""
    if isinstance(server, psycopg.Connection):
        yield server
    else:
        with maintenance(server) as conn:
            yield conn


def rename_database(server: PostgresURL | psycopg.Connection, old: str, new: str) -> None:
    """ALTER DATABASE `old` RENAME TO `new` (nobody may be connected to `old`)."""
    with _on_server(server) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(old), sql.Identifier(new)
            )
        )


def set_allow_connections(
    server: PostgresURL | psycopg.Connection, dbname: str, allow: bool
) -> None:
    """Let (or stop) every client connect to `dbname`, superusers included."""
    with _on_server(server) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(dbname), sql.Literal(bool(allow))
            )
        )


def terminate_sessions(server: PostgresURL | psycopg.Connection, dbname: str) -> int:
    """End every other session on `dbname` (any app server's); return how many."""
    with _on_server(server) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def maintenance_lock_key(dbname: str) -> int:
    """Return the advisory lock key a restore or migration of `dbname` holds on its server
    (snapshots.pg takes it; every app server sees it; it ends with its session)."""
    digest = hashlib.sha256(f"nukeworks-maintenance:{dbname}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def reopen_if_abandoned(url: PostgresURL) -> bool:
    """Open `url`'s database again when it is closed to connections but no restore or
    migration holds its lock: the process doing one died mid-swap. Return True if reopened.

    Called by dbselect.recovery when a connection is refused as "not accepting connections",
    so a killed restore heals at the next request instead of waiting for an operator.
    """
    key = maintenance_lock_key(url.dbname)
    with maintenance(url) as conn:
        row = conn.execute(
            "SELECT datallowconn FROM pg_database WHERE datname = %s", (url.dbname,)
        ).fetchone()
        if row is None or row[0]:
            return False
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            return False  # a restore or migration is at work: it reopens the database itself
        try:
            set_allow_connections(conn, url.dbname, True)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    logger.warning(
        "reopened %s: it was closed by a restore or migration that stopped half-way",
        url.server(),
    )
    return True
