"""Snapshots of PostgreSQL databases: pg_dump archives, restores into a fresh database, swaps.

A PostgreSQL database of the catalog (target `postgresql:<label>`) is snapshotted with
`pg_dump --format=custom --no-owner --no-privileges` into its snapshots folder
(databases/<label>/snapshots/<label>-<time>-<id>.pgdump), with the same sidecar as a file's
snapshot. The dump reads one exported snapshot (`pg_export_snapshot()`), and the payload hashes
and schema state recorded in the sidecar are read in that same transaction, so the sidecar
describes exactly the moment the archive holds. The archive is written under a temporary name,
hashed and fsynced, checked with `pg_restore --list`, renamed into place and its folder fsynced.

A restore never writes into the live database. The archive is restored into a fresh database
on the same server while the live one keeps serving; then, for a few milliseconds, the live
database is closed to every client of every app server (`ALLOW_CONNECTIONS false` and its
sessions terminated: in-flight transactions are rolled back, never acknowledged) and the two
databases swap names in one transaction (`ALTER DATABASE … RENAME` twice, atomic), so the live
name always exists and names either the old content or the restored one. The old database,
renamed `<db>__pre_<stamp>`, holds exactly the last acknowledged state: it is dumped as the
safety snapshot and only then dropped.

Every such operation on one database (restore, migration) holds a PostgreSQL advisory lock on
the server's maintenance database, so two app servers never run them at once on one database,
and a server that dies mid-way releases it with its connection.

The client programs come from Debian's packages, in the server's major version
(/usr/lib/postgresql/<major>/bin/), run with the entry's libpq environment (PGHOST, PGPORT,
PGUSER, PGPASSWORD, PGDATABASE): a password is never put on a command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from dbselect.catalog import clients, postgres
from dbselect.catalog.dsn import PostgresURL
from dbselect.files.validation import DatabaseInfo
from payloads import references
from payloads.store import SHA256

logger = logging.getLogger("nukeworks.snapshots")

Progress = Callable[[int, int], None]

# Seconds between two progress reports of a dump.
PROGRESS_INTERVAL = 0.2
# Times a rename or a template copy is tried again when sessions of the database have not
# ended yet (PostgreSQL itself waits up to 5 s for terminated backends each time).
IN_USE_ATTEMPTS = 5
# Seconds the sessions of a database being closed are given to end, and the poll interval.
DRAIN_TIMEOUT = 5.0
DRAIN_POLL = 0.002
# Longest base of a work database's name: the name is `<base>__<what>_<stamp>`, at most 63.
MAX_BASE = 30


class PgFailed(Exception):
    """A pg_dump/pg_restore run or a server-side step failed; the message is for people."""


class PgBusy(PgFailed):
    """Another restore or migration of this database runs (on any app server)."""


@dataclass(frozen=True)
class Dumped:
    """A finished pg_dump archive and what its moment held."""

    path: Path
    size: int
    sha256: str
    info: DatabaseInfo | None
    payloads: tuple[str, ...]
    seconds: float = 0.0


# -- client programs --------------------------------------------------------------------------


def tool(name: str, major: int) -> str:
    """Return the client program `name` for a server of version `major` (dbselect.catalog
    .clients.program); raise PgFailed when none is installed."""
    found = clients.program(name, major)
    if found is None:
        raise PgFailed(
            f"{name} is not installed on this server "
            f"(Debian: apt install postgresql-client-{major})."
        )
    return found


def server_major(conn: psycopg.Connection) -> int:
    """Return the major version of the server `conn` is connected to."""
    return int(conn.info.server_version) // 10000


def _run(
    command: list[str],
    url: PostgresURL,
    *,
    stdin: int | None = None,
    watch: Path | None = None,
    total: int = 0,
    progress: Progress | None = None,
) -> bytes:
    """Run a client program with `url`'s environment; return its output, raise PgFailed."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        child = subprocess.Popen(
            command,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=clients.environment(url, "nukeworks-snapshots"),
            close_fds=True,
        )
        try:
            last = 0.0
            while True:
                try:
                    child.wait(PROGRESS_INTERVAL if progress is not None else None)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if progress is not None and watch is not None and time.monotonic() - last > 0.2:
                    last = time.monotonic()
                    with contextlib.suppress(OSError):
                        progress(min(watch.stat().st_size, total), total)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        err.seek(0)
        out.seek(0)
        if child.returncode != 0:
            program = os.path.basename(command[0])
            raise PgFailed(f"{program} failed: {clients.error_text(err.read(), url)}")
        return out.read()


# -- dumps ------------------------------------------------------------------------------------


def _payloads(conn: psycopg.Connection) -> tuple[str, ...]:
    """Return the payload hashes the database's rows reference (payloads.references' sources)."""
    found: set[str] = set()
    for table, column in references.sources():
        exists = conn.execute("SELECT to_regclass(%s)", (f'"{table}"',)).fetchone()
        if not exists or exists[0] is None:
            continue
        rows = conn.execute(
            sql.SQL("SELECT DISTINCT {} FROM {}").format(
                sql.Identifier(column), sql.Identifier(table)
            )
        ).fetchall()
        found |= {v for (v,) in rows if isinstance(v, str) and SHA256.match(v)}
    return tuple(sorted(found))


def _hash_and_sync(path: Path) -> tuple[int, str]:
    """Return the size and SHA-256 of a file just written, flushed to disk."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while block := os.read(fd, 4 << 20):
            digest.update(block)
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    return size, digest.hexdigest()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dump(
    url: PostgresURL, destination: Path, *, target: str, progress: Progress | None = None
) -> Dumped:
    """pg_dump the database at `url` into the new file `destination`, atomically and durably.

    `target` names the database in the returned info (its catalog target). Raise PgFailed,
    leaving nothing behind, on any error.
    """
    if destination.exists():
        raise PgFailed(f"{destination} already exists.")
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.partial")
    started = time.monotonic()
    try:
        with postgres.connect(url) as conn:
            # One moment for the archive and its sidecar: pg_dump reads the snapshot this
            # transaction exports, and the payloads and schema are read in it.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            exported = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            total = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
            info = postgres.inspect_open(conn, target)
            payloads = _payloads(conn)
            command = [
                tool("pg_dump", server_major(conn)),
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--snapshot={exported}",
                f"--file={partial}",
            ]
            _run(command, url, watch=partial, total=total, progress=progress)
            conn.rollback()
        size, sha256 = _hash_and_sync(partial)
        check_archive_path(partial, url)
        os.replace(partial, destination)
        _fsync_folder(destination.parent)
    except psycopg.Error as exc:
        raise PgFailed(postgres.describe_error(exc)) from None
    except OSError as exc:
        raise PgFailed(f"The snapshot could not be written: {exc.strerror or exc}.") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    if progress is not None:
        progress(total, total)
    return Dumped(destination, size, sha256, info, payloads, time.monotonic() - started)


def check_archive_path(path: Path, url: PostgresURL) -> None:
    """Raise PgFailed unless `pg_restore --list` reads the archive at `path`."""
    _run([tool("pg_restore", newest_client()), "--list", str(path)], url)


def check_archive(fd: int, url: PostgresURL) -> None:
    """Raise PgFailed unless `pg_restore --list` reads the archive open as `fd` (its table of
    contents: a truncated or foreign file fails here)."""
    os.lseek(fd, 0, os.SEEK_SET)
    _run([tool("pg_restore", newest_client()), "--list"], url, stdin=fd)


def newest_client() -> int:
    """Return the newest installed client version: it reads every older archive."""
    return max(clients.installed_versions("pg_restore"), default=0)


# -- server-side steps --------------------------------------------------------------------------


def work_name(live: str, what: str) -> str:
    """Return a fresh name for a work database of `live` (`<live>__<what>_<stamp>`)."""
    stamp = f"{datetime.now(UTC):%Y%m%d%H%M%S}{secrets.token_hex(2)}"
    return f"{live[:MAX_BASE]}__{what}_{stamp}"


def restore_new(url: PostgresURL, dbname: str, fd: int) -> None:
    """Create the database `dbname` on `url`'s server and pg_restore the archive `fd` into it.

    On failure the new database is dropped and PgFailed raised.
    """
    try:
        with postgres.maintenance(url) as conn:
            major = server_major(conn)
        postgres.create_database(url, dbname, template="template0")
    except psycopg.Error as exc:
        raise PgFailed(postgres.describe_error(exc)) from None
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        _run(
            [
                tool("pg_restore", major),
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                f"--dbname={dbname}",
            ],
            url.with_dbname(dbname),
            stdin=fd,
        )
    except BaseException:
        drop_quietly(url, dbname)
        raise


def drop_quietly(url: PostgresURL, dbname: str) -> bool:
    """DROP DATABASE `dbname` if it exists; log (never raise) a failure. True when gone."""
    try:
        postgres.drop_database(url, dbname)
    except psycopg.Error as exc:
        logger.error("work database %s not dropped: %s", dbname, postgres.describe_error(exc))
        return False
    return True


@contextlib.contextmanager
def maintenance_lock(url: PostgresURL, timeout: float) -> Iterator[psycopg.Connection]:
    """Hold the server-wide lock of one database's restores and migrations.

    A session advisory lock on the server's maintenance database, keyed by the database's
    name: every app server sees it, and it goes with the connection if this process dies.
    Yields that autocommit connection (the steps of the swap run on it). Raise PgBusy after
    `timeout` seconds.
    """
    key = postgres.maintenance_lock_key(url.dbname)
    try:
        with postgres.maintenance(url) as conn:
            deadline = time.monotonic() + timeout
            while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise PgBusy(
                        "Another restore or migration of this PostgreSQL database is running "
                        "(possibly on another app server). Try again in a moment."
                    )
                time.sleep(0.05)
            try:
                yield conn
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    except psycopg.Error as exc:
        raise PgFailed(postgres.describe_error(exc)) from None


def _drain(conn: psycopg.Connection, dbname: str, timeout: float = DRAIN_TIMEOUT) -> int:
    """End every session of `dbname` and wait until they are gone; return how many ended.

    A session that had passed the connection check just before the database was closed may
    appear after the first round: it is ended too. Waiting here (polling every few
    milliseconds) is quicker than letting a rename find it, which waits 5 s before failing.
    """
    ended = 0
    deadline = time.monotonic() + timeout
    while True:
        ended += postgres.terminate_sessions(conn, dbname)
        left = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchone()[0]
        if not left or time.monotonic() > deadline:
            return ended
        time.sleep(DRAIN_POLL)


def allow_connections(conn: psycopg.Connection, dbname: str) -> None:
    """Let clients connect to `dbname` again."""
    postgres.set_allow_connections(conn, dbname, True)


@contextlib.contextmanager
def closed(conn: psycopg.Connection, url: PostgresURL, live: str) -> Iterator[int]:
    """Close the database `live` to every client of every app server for the block.

    No new session may start (`ALLOW_CONNECTIONS false`, superusers included) and every open
    one is ended (an in-flight transaction is rolled back, so never acknowledged). Yields how
    many sessions were ended. On leaving, the database named `live` (the same one, or what a
    swap put there) accepts connections again; if the block failed, a fresh connection makes
    sure of it, so the live database is never left closed.
    """
    postgres.set_allow_connections(conn, live, False)
    try:
        yield _drain(conn, live)
    finally:
        try:
            postgres.set_allow_connections(conn, live, True)
        except psycopg.Error:
            logger.warning("reopening %s on a fresh connection", live)
            postgres.set_allow_connections(url, live, True)


def _retry_in_use(conn: psycopg.Connection, live: str, step: Callable[[], None]) -> None:
    """Run `step`; while sessions of `live` have not ended yet, end them and try again."""
    for attempt in range(IN_USE_ATTEMPTS):
        try:
            step()
            return
        except pg_errors.ObjectInUse:
            if attempt == IN_USE_ATTEMPTS - 1:
                raise
            _drain(conn, live)


def swap(conn: psycopg.Connection, live: str, replacement: str, old: str) -> None:
    """Give `replacement` the name `live`, and the database that had it the name `old`.

    One transaction (both renames or neither): the name `live` always exists. The caller holds
    `live` closed (`closed`), so nothing can be written to it after this point.
    """

    def both() -> None:
        with conn.transaction():
            postgres.rename_database(conn, live, old)
            postgres.rename_database(conn, replacement, live)

    _retry_in_use(conn, live, both)


def swap_committed(url: PostgresURL, old: str) -> bool | None:
    """After a swap raised: return whether it committed all the same (the database `old`
    exists), asked on a fresh connection; None when the server cannot say."""
    try:
        return postgres.database_exists(url, old)
    except psycopg.Error:
        return None


def clone(conn: psycopg.Connection, live: str, copy: str) -> None:
    """CREATE DATABASE `copy` TEMPLATE `live` (the caller holds `live` closed)."""

    def create() -> None:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(copy), sql.Identifier(live)
            )
        )

    _retry_in_use(conn, live, create)


def latest_audit_time(url: PostgresURL, table: str) -> datetime | None:
    """Return the newest `created_at` of the audit table of the database at `url`."""
    with postgres.connect(url, readonly=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f'"{table}"',)).fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute(
            sql.SQL("SELECT max(created_at) FROM {}").format(sql.Identifier(table))
        ).fetchone()
    return row[0] if row else None


def audit_rows_since(
    url: PostgresURL, table: str, fields: tuple[str, ...], since: datetime | None, limit: int
) -> list[dict]:
    """Return the audit rows of the database at `url` newer than `since`, oldest first."""
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(f) for f in fields), sql.Identifier(table)
    )
    params: list[object] = []
    if since is not None:
        query += sql.SQL(" WHERE created_at > %s")
        params.append(since)
    query += sql.SQL(" ORDER BY created_at DESC, id DESC LIMIT %s")
    params.append(limit)
    with postgres.connect(url, readonly=True) as conn:
        rows = conn.execute(query, params).fetchall()
    return [dict(zip(fields, row, strict=True)) for row in reversed(rows)]
