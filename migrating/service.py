"""Bring one database file up to the code's schema, safely (the view and migrate_all use it).

The order is fixed: take a lock on the file (one migration at a time per file, across threads
and gunicorn worker processes), re-check its state under the lock (another admin may just have
migrated it), take a snapshot, run Django's migrations for that file's alias, and restore the
snapshot if any step fails, so a failed migration loses nothing. `migrate` is never wrapped in
`atomic()` (SQLite's schema editor refuses it with foreign keys on); the snapshot is the
safety net.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.core.management import call_command
from django.db import connections

from audit import log as audit_log
from dbselect import engines, signals, state
from dbselect.engines import gate, query_budget
from dbselect.files.locks import LockTimeout, flocked
from dbselect.files.schema import Migration, SchemaState, migration_names
from dbselect.files.validation import DatabaseInfo, ValidationFailed, inspect_database
from snapshots.metadata import Kind
from snapshots.service import SnapshotError, create_snapshot
from snapshots.sqlite_copy import CopyFailed, restore_into

logger = logging.getLogger("nukeworks.migrating")

LOCK_SUFFIX = ".migrate.lock"


class MigrationRefused(Exception):
    """The file cannot be migrated at all (not NukeWorks, newer, unreadable)."""


class MigrationInProgress(Exception):
    """Another process or thread is migrating this file and did not finish in time."""


class MigrationFailed(Exception):
    """A migration step failed; the file was restored from the pre-migration snapshot."""

    def __init__(self, reason: str, snapshot: Path | None, restored: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.snapshot = snapshot
        self.restored = restored


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


@contextlib.contextmanager
def file_lock(path: str, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock beside `path` (works across threads and processes)."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(
                flocked(path + LOCK_SUFFIX, exclusive=True, timeout=timeout, mode=0o600)
            )
        except LockTimeout:
            raise MigrationInProgress(
                "Another administrator is migrating this database right now; try again in a moment."
            ) from None
        except OSError as exc:
            # A link or a FIFO planted under the lock's name is refused, never followed.
            raise MigrationRefused(
                f"The migration lock beside the database cannot be used: {exc.strerror or exc} "
                f"({path}{LOCK_SUFFIX})."
            ) from exc
        yield


def plan_for(path: str) -> DatabaseInfo:
    """Return the file's state, refusing files that can never be migrated."""
    try:
        info = inspect_database(path)
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
    """Apply the code's pending migrations to the file at `path` (absolute, validated)."""
    plan_for(path)
    try:
        closed_gate = gate.exclusive(engines.register(path).path, timeout=lock_timeout)
        with closed_gate, file_lock(path, lock_timeout), query_budget.unlimited():
            return _migrate_locked(path, author, take_snapshot, request)
    except gate.GateClosed:
        raise MigrationInProgress(
            f"Requests kept working on this database for {lock_timeout:g} s; nothing was "
            "migrated. Try again in a moment."
        ) from None


def _migrate_locked(
    path: str, author: str, take_snapshot: SnapshotTaker | None, request: object | None
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
    try:
        with state.override(engine.alias):
            call_command(
                "migrate",
                database=engine.alias,
                interactive=False,
                verbosity=1,
                stdout=output,
                stderr=output,
            )
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
    alias: str, path: str, author: str, outcome: str, detail: str, request: object, restored: bool
) -> None:
    if outcome == "failure":
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
