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
import glob
import os
import re
import shutil
import subprocess
import tempfile

import psycopg

from dbselect.catalog import postgres
from dbselect.catalog.dsn import PostgresURL
from dbselect.conf import setting

# How much of a client program's error output is kept for people (its last characters).
MAX_ERROR_TEXT = 600


class CopyFailed(Exception):
    """The copy failed; the message says why (never a password)."""


def _major_of(path: str) -> int:
    match = re.search(r"/postgresql/(\d+)/bin/", path)
    return int(match.group(1)) if match else 0


def tool(name: str, major: int) -> str:
    """Return the client program `name` for a server of version `major` (same or newer)."""
    usable = sorted(
        (p for p in glob.glob(f"/usr/lib/postgresql/*/bin/{name}") if _major_of(p) >= major),
        key=_major_of,
    )
    found = usable[0] if usable else shutil.which(name)
    if not found:
        raise CopyFailed(f"{name} is not installed here (Debian: postgresql-client-{major}).")
    return found


def _environment(url: PostgresURL) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(url.environment())
    env["PGCONNECT_TIMEOUT"] = str(int(setting("POSTGRES_CONNECT_TIMEOUT")))
    env["PGAPPNAME"] = "nukeworks-copy"
    env["LC_ALL"] = "C"
    return env


def _error_text(handle, url: PostgresURL) -> str:
    handle.seek(0)
    text = handle.read().decode("utf-8", "replace").strip()
    if url.password:
        text = text.replace(url.password, "********")
    return text[-MAX_ERROR_TEXT:] or "no error message"


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


def _pipe(source: PostgresURL, target: PostgresURL, major: int) -> None:
    pg_dump, pg_restore = tool("pg_dump", major), tool("pg_restore", major)
    with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as restore_err:
        dump = subprocess.Popen(
            [pg_dump, "--format=custom", "--no-owner", "--no-privileges"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=dump_err,
            env=_environment(source),
            close_fds=True,
        )
        try:
            restore = subprocess.Popen(
                [
                    pg_restore,
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "--single-transaction",
                    f"--dbname={target.dbname}",
                ],
                stdin=dump.stdout,
                stdout=subprocess.DEVNULL,
                stderr=restore_err,
                env=_environment(target),
                close_fds=True,
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
