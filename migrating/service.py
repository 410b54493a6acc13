"""Bring one database up to the code's schema, safely (the view and migrate_all use it).

The order is fixed: take a lock on the file (one migration at a time per file, across threads
and gunicorn worker processes), re-check its state under the lock (another admin may just have
migrated it), take a snapshot, run Django's migrations for that file's alias, and restore the
snapshot if any step fails, so a failed migration loses nothing. `migrate` is never wrapped in
`atomic()` (SQLite's schema editor refuses it with foreign keys on); the snapshot is the
safety net.

A PostgreSQL database of the catalog (`postgresql:<label>`) is migrated the same way, with a
pg_dump snapshot first, but never in place: other app servers may write to it, and a run of
several migrations that fails half-way would leave the ones before applied. Under the
server-wide lock of the database (snapshots.pg) it is closed to every client of every server,
copied on its server (`CREATE DATABASE … TEMPLATE`), the copy migrated, and the copy swapped
in under the live name (one transaction) only if every migration succeeded. On failure the
copy is dropped and the live database, untouched, is opened again: exactly as it was before
the run, with every write acknowledged before it was closed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from django.core.management import call_command
from django.db import connections

from audit import log as audit_log
from dbselect import catalog, engines, selection, signals, state
from dbselect.catalog import postgres
from dbselect.engines import gate, query_budget
from dbselect.engines.cache import publish_alias
from dbselect.files.locks import LockTimeout, flocked
from dbselect.files.schema import Migration, SchemaState, migration_names
from dbselect.files.validation import DatabaseInfo, ValidationFailed
from dbselect.layout import folder_for
from snapshots import pg
from snapshots.metadata import Kind
from snapshots.service import SnapshotError, create_snapshot
from snapshots.sqlite_copy import CopyFailed, restore_into

logger = logging.getLogger("nukeworks.migrating")

LOCK_SUFFIX = ".migrate.lock"


class MigrationRefused(Exception):
    """The file cannot be migrated at all (not NukeWorks, newer, unreadable)."""


class MigrationInProgress(Exception):
    """Another process or thread is migrating this file and did not finish in time."""


class _SwapUncertain(Exception):
    """A PostgreSQL swap failed and the server could not say whether it committed."""


class MigrationFailed(Exception):
    """A migration step failed; the file was restored from the pre-migration snapshot."""

    def __init__(
        self, reason: str, snapshot: Path | None, restored: bool, *, untouched: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.snapshot = snapshot
        self.restored = restored
        # A PostgreSQL database: the migrations ran on a copy, the live one was never changed.
        self.untouched = untouched

    @property
    def outcome(self) -> str:
        """What became of the database, in words (after "Migration failed: <reason>.")."""
        if self.untouched:
            return (
                "The migrations ran on a copy of the database, which was discarded: the "
                "database is exactly as it was; nothing was lost."
            )
        if self.restored and self.snapshot:
            return (
                f"The database was restored from the snapshot {self.snapshot.name}; "
                "nothing was lost."
            )
        return "Restoring the snapshot failed too: the snapshot is kept in the snapshots folder."


@dataclass
class MigrationOutcome:
    """What happened to one file."""

    path: str
    applied: tuple[Migration, ...] = ()
    snapshot: Path | None = None
    already_current: bool = False
    log: list[str] = field(default_factory=list)


SnapshotTaker = Callable[[str, str, str], Path]


def _default_snapshot(path: str, author: str, note: str) -> Path:
    """Take the pre-migration snapshot through the snapshots service (listed, audited)."""
    try:
        return create_snapshot(path, note=note, kind=Kind.PRE_MIGRATION, username=author).path
    except SnapshotError as exc:
        raise MigrationRefused(
            f"The snapshot taken before migrating failed, so nothing was changed: {exc}"
        ) from exc


def lock_path(path: str) -> str:
    """Return the migration lock file of a database: beside the file, or for a PostgreSQL
    database of the catalog in its folder, databases/<label>/.migrate.lock."""
    if catalog.is_target(path):
        folder = folder_for(path)
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / LOCK_SUFFIX)
    return path + LOCK_SUFFIX


@contextlib.contextmanager
def file_lock(path: str, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock beside `path` (works across threads and processes)."""
    lock = lock_path(path)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(flocked(lock, exclusive=True, timeout=timeout, mode=0o600))
        except LockTimeout:
            raise MigrationInProgress(
                "Another administrator is migrating this database right now; try again in a moment."
            ) from None
        except OSError as exc:
            # A link or a FIFO planted under the lock's name is refused, never followed.
            raise MigrationRefused(
                f"The migration lock beside the database cannot be used: {exc.strerror or exc} "
                f"({lock})."
            ) from exc
        yield


def inspect(path: str) -> DatabaseInfo:
    """Validate a database read-only: a file, or a PostgreSQL database of the catalog."""
    return selection.inspect_target(path)


def plan_for(path: str) -> DatabaseInfo:
    """Return the database's state, refusing databases that can never be migrated."""
    try:
        info = inspect(path)
    except ValidationFailed as exc:
        raise MigrationRefused(exc.reason) from None
    if info.state is SchemaState.NOT_NUKEWORKS:
        raise MigrationRefused("This is not a NukeWorks database; it cannot be migrated.")
    if info.state is SchemaState.NEWER:
        names = migration_names(info.unknown)
        raise MigrationRefused(
            f"This database was created by a newer version of NukeWorks ({names}); "
            "it is never migrated backwards."
        )
    return info


@signals.timed("migration")
def migrate_database(
    path: str,
    *,
    author: str,
    lock_timeout: float = 60.0,
    take_snapshot: SnapshotTaker | None = None,
    request: object | None = None,
) -> MigrationOutcome:
    """Apply the code's pending migrations to the file at `path` (absolute, validated), or to
    the PostgreSQL database of the catalog target `path`."""
    plan_for(path)
    try:
        with contextlib.ExitStack() as stack:
            admin = None
            if catalog.is_target(path):
                # Every app server's migrations and restores of it, one at a time; taken
                # before the gate (as a restore does), never while holding it.
                admin = stack.enter_context(_server_lock(path, lock_timeout))
            stack.enter_context(gate.exclusive(engines.register(path).path, timeout=lock_timeout))
            stack.enter_context(file_lock(path, lock_timeout))
            stack.enter_context(query_budget.unlimited())
            return _migrate_locked(path, author, take_snapshot, request, admin)
    except gate.GateClosed:
        raise MigrationInProgress(
            f"Requests kept working on this database for {lock_timeout:g} s; nothing was "
            "migrated. Try again in a moment."
        ) from None


@contextlib.contextmanager
def _server_lock(path: str, timeout: float) -> Iterator[psycopg.Connection]:
    """Hold the server-wide lock of a PostgreSQL database's migrations and restores."""
    entry = catalog.entry_for_target(path)
    if entry is None:
        raise MigrationRefused(
            "This PostgreSQL database is no longer in the catalog (an operator removed it)."
        )
    # This request stops holding its database's gate while it waits (see snapshots.service).
    gate.leave_all()
    try:
        with pg.maintenance_lock(entry.url, timeout) as conn:
            yield conn
    except pg.PgBusy:
        raise MigrationInProgress(
            "Another administrator is migrating or restoring this database right now (possibly "
            "on another app server); try again in a moment."
        ) from None
    except pg.PgFailed as exc:
        raise MigrationRefused(f"{exc} Nothing was migrated.") from None


def _migrate_locked(
    path: str,
    author: str,
    take_snapshot: SnapshotTaker | None,
    request: object | None,
    admin: psycopg.Connection | None = None,
) -> MigrationOutcome:
    """Migrate `path` while nobody else works on it (the caller holds the gate and lock)."""
    info = plan_for(path)  # again: the state may have changed while we waited
    if info.state is SchemaState.UP_TO_DATE:
        return MigrationOutcome(path, already_current=True)
    engine = engines.register(path)
    snapshot = (take_snapshot or _default_snapshot)(
        path, author, "Before applying migrations: " + migration_names(info.pending)
    )
    output = io.StringIO()
    connections[engine.alias].close()
    if admin is not None:
        _migrate_postgres(path, engine.alias, admin, output, snapshot, author, request)
    else:
        try:
            _run_migrate(engine.alias, output)
        except Exception as exc:  # any failure: put the file back as it was
            reason = f"{type(exc).__name__}: {exc}"
            restored = _restore(path, engine.alias, snapshot)
            _audit(engine.alias, path, author, "failure", reason, request, restored)
            raise MigrationFailed(reason, snapshot, restored) from exc
        engines.dispose(path, forget=False)
    outcome = MigrationOutcome(
        path, applied=info.pending, snapshot=snapshot, log=output.getvalue().splitlines()
    )
    _audit(
        engine.alias,
        path,
        author,
        "success",
        f"Applied {migration_names(info.pending)}; snapshot {snapshot.name}",
        request,
        True,
    )
    logger.info("migrated path=%r applied=%d snapshot=%s", path, len(info.pending), snapshot)
    return outcome


def _run_migrate(alias: str, output: io.StringIO) -> None:
    with state.override(alias):
        call_command(
            "migrate",
            database=alias,
            interactive=False,
            verbosity=1,
            stdout=output,
            stderr=output,
        )


def _migrate_postgres(
    path: str,
    alias: str,
    admin: psycopg.Connection,
    output: io.StringIO,
    snapshot: Path,
    author: str,
    request: object | None,
) -> None:
    """Migrate a copy of the closed live database and swap it in (see the module docstring).

    Raise MigrationFailed (restored=True: the live database is as it was) when a migration
    fails, and also when the copy or the swap cannot be made (nothing changed either).
    """
    entry = catalog.entry_for_target(path)
    if entry is None:
        raise MigrationRefused("This PostgreSQL database is no longer in the catalog.")
    url, live = entry.url, entry.url.dbname
    copy, old = pg.work_name(live, "migrate"), pg.work_name(live, "premigrate")
    # The copy's own connection alias, reused by every migration of this database.
    work_alias = f"{alias}__migrating"
    started = time.monotonic()
    copied = False
    try:
        with pg.closed(admin, url, live) as ended:
            pg.clone(admin, live, copy)
            copied = True
            publish_alias(
                work_alias,
                catalog.django_settings(
                    catalog.CatalogEntry(entry.label, url.with_dbname(copy)),
                    connections.databases["default"],
                ),
            )
            try:
                _run_migrate(work_alias, output)
            finally:
                # Closed, and this thread's wrapper forgotten: the next migration of this
                # database publishes the alias again for another copy.
                connections[work_alias].close()
                del connections[work_alias]
            try:
                pg.swap(admin, live, copy, old)
            except psycopg.Error as exc:
                # One transaction: committed (then it is done) or not at all. Ask the server.
                committed = pg.swap_committed(url, old)
                if committed is None:
                    raise _SwapUncertain(
                        f"{postgres.describe_error(exc)} The server cannot say whether the "
                        f"migrated copy took the database's place: the database as it was is "
                        f"either still live or kept as {old}. Nothing is lost; check the "
                        "PostgreSQL server."
                    ) from exc
                if not committed:
                    raise
                logger.error("swap of %s committed, then failed: %s", path, exc)
    except _SwapUncertain as exc:
        _audit(alias, path, author, "failure", str(exc), request, True, in_place=False)
        raise MigrationFailed(str(exc), snapshot, False) from exc
    except Exception as exc:
        if copied:
            # After the live database is open again: dropping takes a checkpoint.
            pg.drop_quietly(url, copy)
        if isinstance(exc, psycopg.Error):
            reason = postgres.describe_error(exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
        _audit(alias, path, author, "failure", reason, request, True, in_place=False)
        raise MigrationFailed(reason, snapshot, True, untouched=True) from exc
    downtime = time.monotonic() - started
    logger.info(
        "postgresql migrated by swap database=%s closed=%.3fs sessions_ended=%d",
        path,
        downtime,
        ended,
    )
    # The replaced database holds the pre-migration content (the snapshot has it too, and
    # every write made since is in the migrated copy): not needed any more.
    pg.drop_quietly(url, old)
    engines.dispose(path, everywhere=True)


def _restore(path: str, alias: str, snapshot: Path) -> bool:
    connections[alias].close()
    try:
        restore_into(snapshot, path)
    except CopyFailed as exc:
        logger.error("restore after failed migration failed path=%r: %s", path, exc)
        return False
    engines.dispose(path, forget=False)
    return True


def _audit(
    alias: str,
    path: str,
    author: str,
    outcome: str,
    detail: str,
    request: object,
    restored: bool,
    *,
    in_place: bool = True,
) -> None:
    if outcome == "failure" and not in_place:
        detail += " — the migrated copy was discarded, the database is as it was"
    elif outcome == "failure":
        detail += (
            " — restored from the pre-migration snapshot"
            if restored
            else (" — RESTORE FAILED, the snapshot is kept")
        )
    audit_log.record(
        "database.migrate",
        target=path,
        outcome=outcome,
        detail=detail,
        username=author,
        request=request,
        using=alias,  # type: ignore[arg-type]
    )
