"""Copy a PostgreSQL database into a new database on its server: pg_dump | pg_restore.

`CREATE DATABASE new TEMPLATE old` would need every session of the live database closed; a
dump reads one consistent snapshot while others keep working (pg_dump's own transaction), so
a duplicate is `pg_dump --format=custom` piped into `pg_restore --single-transaction` of a new,
empty database (template0). The client programs come from Debian's packages in the server's
major version or newer (/usr/lib/postgresql/<major>/bin/, else PATH) and run with the libpq
environment of the entry (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE): a password is never
put on a command line, and never in an error message.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from typing import IO

import psycopg

from dbselect.catalog import clients, postgres
from dbselect.catalog.dsn import PostgresURL


class CopyFailed(Exception):
    """The copy failed; the message says why (never a password)."""


def tool(name: str, major: int) -> str:
    """Return the client program `name` for a server of version `major` (same or newer)."""
    found = clients.program(name, major)
    if found is None:
        raise CopyFailed(f"{name} is not installed here (Debian: postgresql-client-{major}).")
    return found


def _error_text(handle, url: PostgresURL) -> str:
    handle.seek(0)
    return clients.error_text(handle.read(), url)


def copy_into_new(source: PostgresURL, target: PostgresURL) -> int:
    """Create the database `target.dbname` on the server of `target` and copy `source` into
    it; return the new database's size in bytes. Drop it and raise CopyFailed on any error."""
    try:
        with postgres.maintenance(source) as conn:
            major = int(conn.info.server_version) // 10000
        postgres.create_database(target, target.dbname, template="template0")
    except psycopg.Error as exc:
        raise CopyFailed(postgres.describe_error(exc)) from None
    try:
        _pipe(source, target, major)
        with postgres.connect(target) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return int(size)
    except BaseException as exc:
        with contextlib.suppress(psycopg.Error):
            postgres.drop_database(target, target.dbname)
        if isinstance(exc, psycopg.Error):
            raise CopyFailed(postgres.describe_error(exc)) from None
        raise


def _start(
    command: list[str],
    url: PostgresURL,
    *,
    stdin: int | IO[bytes] | None,
    stdout: int | IO[bytes],
    stderr: IO[bytes],
) -> subprocess.Popen[bytes]:
    """Start a client program with `url`'s libpq environment (its password never on the
    command line)."""
    return subprocess.Popen(
        command,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=clients.environment(url, "nukeworks-copy"),
        close_fds=True,
    )


def _pipe(source: PostgresURL, target: PostgresURL, major: int) -> None:
    pg_dump, pg_restore = tool("pg_dump", major), tool("pg_restore", major)
    with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as restore_err:
        dump = _start(
            [pg_dump, "--format=custom", "--no-owner", "--no-privileges"],
            source,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=dump_err,
        )
        try:
            restore = _start(
                [
                    pg_restore,
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "--single-transaction",
                    f"--dbname={target.dbname}",
                ],
                target,
                stdin=dump.stdout,
                stdout=subprocess.DEVNULL,
                stderr=restore_err,
            )
        finally:
            assert dump.stdout is not None
            dump.stdout.close()  # pg_restore holds the pipe now; pg_dump sees it end
        restore.wait()
        if restore.returncode != 0 and dump.poll() is None:
            dump.kill()
        dump.wait()
        if dump.returncode != 0:
            raise CopyFailed(f"pg_dump failed: {_error_text(dump_err, source)}")
        if restore.returncode != 0:
            raise CopyFailed(f"pg_restore failed: {_error_text(restore_err, target)}")
