"""The snapshot service: create, list, delete, restore and prune snapshots of one database.

Every function takes the database's absolute path; its snapshots live in the sibling
`snapshots/` folder (dbselect.layout.snapshot_dir_for), and its audit entries and retention settings
in the database itself. Views and the `snapshot` command are thin layers over this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import psycopg
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connections
from django.http import HttpRequest
from django.utils.dateparse import parse_datetime

from audit import log as audit_log
from audit.models import AuditEntry
from dbselect import catalog, engines, signals
from dbselect.catalog import postgres
from dbselect.engines import gate
from dbselect.files.paths import sqlite_uri
from dbselect.files.schema import SchemaState
from dbselect.files.validation import DatabaseInfo, ValidationFailed, inspect_database
from dbselect.layout import snapshot_dir_for
from payloads import references
from snapshots import folder as folder_content
from snapshots import metadata, naming, pg, retention
from snapshots.errors import SnapshotBusy, SnapshotError, SnapshotIgnored, SnapshotNotFound
from snapshots.folder import Ignored
from snapshots.locks import folder_lock
from snapshots.metadata import Kind, Snapshot
from snapshots.sqlite_copy import (
    CopyFailed,
    Progress,
    check_integrity,
    copy_database,
    sha256_of_descriptor,
)
from snapshots.sqlite_copy import restore_into as _restore_into

logger = logging.getLogger("nukeworks.snapshots")

MAX_NOTE = 500
# Seconds an operation waits for another one on the same database (a restore, a delete…).
LOCK_TIMEOUT = 30.0
# Audit entries written after a snapshot was taken are carried into the restored database
# (the audit trail must survive a restore); beyond this many, the oldest stay in the safety
# snapshot only.
MAX_CARRIED_AUDIT = 10_000

__all__ = [
    "FolderScan",
    "Ignored",
    "Kind",
    "RestoreResult",
    "Snapshot",
    "SnapshotBusy",
    "SnapshotError",
    "SnapshotIgnored",
    "SnapshotNotFound",
    "create_snapshot",
    "delete_snapshot",
    "folder_for",
    "get_snapshot",
    "list_snapshots",
    "open_snapshot",
    "prune",
    "prune_plan",
    "restore_snapshot",
    "scan_folder",
    "verify_restorable",
]


@dataclass(frozen=True)
class RestoreResult:
    """A finished restore: what was restored and the safety snapshot taken just before.

    For a PostgreSQL database the safety snapshot is dumped from the replaced database right
    after the swap; should that fail, `safety` is None and the replaced database is kept on
    its server as `kept_database` (nothing is lost, an operator dumps or drops it).
    `downtime` is how long (seconds) the database refused every client during the swap.
    """

    restored: Snapshot
    safety: Snapshot | None
    carried_audit_entries: int
    kept_database: str = ""
    downtime: float | None = None


@dataclass(frozen=True)
class FolderScan:
    """A database's snapshots (newest first) and the entries of its folder that are ignored."""

    snapshots: list[Snapshot]
    ignored: list[Ignored] = field(default_factory=list)


def folder_for(database: str) -> Path:
    """Return the snapshots folder of a database.

    A PostgreSQL database of the catalog has no file whose folder would already exist: its
    folder, databases/<label>/, is made here when missing (its snapshots/ is made by the
    folder lock, as for a file).
    """
    folder = snapshot_dir_for(database)
    if catalog.is_target(database):
        folder.parent.mkdir(parents=True, exist_ok=True)
    return folder


def _alias(database: str) -> str:
    return engines.register(database).alias


def _entry(database: str) -> catalog.CatalogEntry:
    """Return the catalog entry of a PostgreSQL target; SnapshotError when it is gone."""
    entry = catalog.entry_for_target(database)
    if entry is None:
        raise SnapshotError(
            "This PostgreSQL database is no longer in the catalog (an operator removed it)."
        )
    return entry


def clean_note(note: object) -> str:
    """Return a note as one line of printable text, at most MAX_NOTE characters."""
    text = "".join(
        " " if unicodedata.category(ch).startswith(("C", "Z")) and ch != " " else ch
        for ch in str(note or "")
    )
    return " ".join(text.split())[:MAX_NOTE]


def _of_another_database(snapshot: Snapshot, database: str) -> bool:
    """Return True for a snapshot its sidecar says was taken of another file of this folder.

    Files sharing a folder share `snapshots/`, and different names can share a label
    (`site.sqlite` and `site.db`, or names cut at MAX_LABEL): such a snapshot is never this
    database's. A sidecar naming a file in another folder is this database's, moved.
    """
    source = snapshot.source_path
    return bool(source) and source != database and Path(source).parent == Path(database).parent


def scan_folder(database: str) -> FolderScan:
    """Return the snapshots of `database`, newest first, and what its folder holds besides.

    Snapshots of other databases sharing the folder (another label, or a sidecar naming
    another file of this folder) are neither listed nor reported: they are theirs. Anything
    that is not a snapshot at all (snapshots.folder) is reported as ignored.
    """
    content = folder_content.scan(folder_for(database))
    found = [
        s
        for s in content.snapshots
        if naming.is_snapshot_of(s.name, database) and not _of_another_database(s, database)
    ]
    found.sort(key=lambda s: (s.created_at, s.name), reverse=True)
    return FolderScan(found, content.ignored)


def list_snapshots(database: str) -> list[Snapshot]:
    """Return the snapshots of `database`, newest first."""
    return scan_folder(database).snapshots


def _inspect(database: str, name: str, *, keep_open: bool) -> tuple[Snapshot, int | None]:
    """Return the snapshot `name` of `database` (and its checked descriptor with keep_open).

    Raise SnapshotNotFound for a name that is no snapshot of this database, SnapshotIgnored
    (a SnapshotNotFound) for an entry of the folder that is not a snapshot (a link, a FIFO, a
    file without sidecar…), SnapshotError when the folder cannot be read.
    """
    if not naming.is_snapshot_of(str(name), database):
        raise SnapshotNotFound("There is no such snapshot of this database.")
    folder = folder_for(database)
    try:
        snapshot, fd = folder_content.inspect(folder, name, keep_open=keep_open)
    except (FileNotFoundError, NotADirectoryError):
        raise SnapshotNotFound(f"There is no snapshot {name} of this database.") from None
    except folder_content.NotASnapshot as exc:
        logger.warning("snapshot refused: %s in %s is ignored (%s)", name, folder, exc.reason)
        raise SnapshotIgnored(
            f"{name} in the snapshots folder is not a snapshot ({exc.reason}); it is ignored."
        ) from None
    except OSError as exc:
        raise SnapshotError(f"The snapshot {name} cannot be read: {exc.strerror}.") from exc
    if _of_another_database(snapshot, database):
        if fd is not None:
            os.close(fd)
        raise SnapshotNotFound(f"There is no snapshot {name} of this database.")
    return snapshot, fd


def get_snapshot(database: str, name: str) -> Snapshot:
    """Return the snapshot `name` of `database`; raise SnapshotNotFound otherwise."""
    return _inspect(database, name, keep_open=False)[0]


def open_snapshot(database: str, name: str) -> tuple[Snapshot, BinaryIO]:
    """Return the snapshot `name` of `database` and a binary file open on exactly it.

    The file object reads the descriptor that was checked (regular file, not a link, inside
    the folder, SQLite header, matching sidecar), so nothing swapped in under the name
    afterwards is ever read. The caller closes it.
    """
    snapshot, fd = _inspect(database, name, keep_open=True)
    assert fd is not None
    return snapshot, os.fdopen(fd, "rb")


@contextlib.contextmanager
def _held_open(database: str, name: str) -> Iterator[tuple[Snapshot, int]]:
    """Yield the snapshot `name` of `database` and its checked descriptor (see open_snapshot),
    closed when the block ends."""
    snapshot, fd = _inspect(database, name, keep_open=True)
    assert fd is not None
    try:
        yield snapshot, fd
    finally:
        os.close(fd)


def _audit(
    action: str,
    alias: str,
    snapshot: Snapshot | None,
    *,
    outcome: str = "success",
    detail: str = "",
    request: HttpRequest | None = None,
    username: str = "",
    target: str = "",
) -> None:
    audit_log.record(
        action,
        target=target or (str(snapshot.path) if snapshot else ""),
        outcome=outcome,
        detail=detail,
        request=request,
        username=username or None,
        using=alias,
    )


def _audit_failure(
    action: str,
    alias: str,
    exc: BaseException,
    *,
    target: str,
    request: HttpRequest | None,
    username: str,
) -> None:
    """Record that `action` failed, with the error as its detail."""
    _audit(
        action,
        alias,
        None,
        outcome="failure",
        detail=str(exc),
        request=request,
        username=username,
        target=target,
    )


@dataclass(frozen=True)
class _Copied:
    """A snapshot file written and flushed, and what its moment held."""

    path: Path
    size: int
    sha256: str
    schema_state: str
    display_name: str
    payloads: tuple[str, ...]


def _copy_file(database: str, target: Path, progress: Progress | None) -> _Copied:
    """Copy the live SQLite file `database` to `target` (snapshots.sqlite_copy)."""
    try:
        copied = copy_database(database, target, progress=progress)
    except CopyFailed as exc:
        raise SnapshotError(str(exc)) from exc
    try:
        info = inspect_database(str(copied.path))
        schema_state, display_name = info.state.value, info.display_name or ""
    except ValidationFailed:
        schema_state, display_name = "", ""
    try:
        # The attachments of this moment: the shared store keeps them while the snapshot
        # exists (the collector reads this list), so none is copied.
        payloads = tuple(sorted(references.referenced_in_file(copied.path)))
    except sqlite3.Error as exc:
        logger.error("snapshot payload references not read: %s %s", copied.path, exc)
        with contextlib.suppress(OSError):
            copied.path.unlink()
        raise SnapshotError(
            f"The snapshot's attachment list could not be read ({exc}); it was discarded."
        ) from exc
    return _Copied(copied.path, copied.size, copied.sha256, schema_state, display_name, payloads)


def _dump_postgres(
    database: str, target: Path, progress: Progress | None, source_dbname: str | None
) -> _Copied:
    """pg_dump the PostgreSQL database of `database` (or its server's `source_dbname`)."""
    url = _entry(database).url
    if source_dbname is not None:
        url = url.with_dbname(source_dbname)
    try:
        dumped = pg.dump(url, target, target=database, progress=progress)
    except pg.PgFailed as exc:
        raise SnapshotError(str(exc)) from exc
    info = dumped.info
    return _Copied(
        dumped.path,
        dumped.size,
        dumped.sha256,
        info.state.value if info else "",
        (info.display_name or "") if info else "",
        dumped.payloads,
    )


def _create(
    database: str,
    *,
    kind: str,
    note: str,
    username: str,
    progress: Progress | None,
    source_dbname: str | None = None,
) -> Snapshot:
    """Take a snapshot (the caller holds the folder lock).

    A PostgreSQL database is dumped with pg_dump (snapshots.pg); `source_dbname` dumps another
    database of its server in its name instead (the one a restore just replaced).
    """
    folder = folder_for(database)
    label = naming.label_for(database)
    started = datetime.now(UTC)
    try:
        folder.mkdir(exist_ok=True)
        target = folder / naming.new_name(label, started, naming.suffix_for(database))
        if catalog.is_target(database):
            copied = _dump_postgres(database, target, progress, source_dbname)
        else:
            copied = _copy_file(database, target, progress)
    except OSError as exc:
        raise SnapshotError(f"The snapshots folder cannot be written: {exc.strerror}.") from exc
    snapshot = Snapshot(
        name=copied.path.name,
        path=copied.path,
        created_at=started,
        size=copied.size,
        created_by=username,
        note=clean_note(note),
        kind=kind,
        sha256=copied.sha256,
        source_path=database,
        source_display_name=copied.display_name,
        schema_state=copied.schema_state,
        payloads=copied.payloads,
    )
    try:
        metadata.write_sidecar(snapshot)
    except OSError as exc:
        # Without its sidecar the file would be ignored (never listed nor restorable): a
        # snapshot nobody can use must not be reported as taken.
        logger.error("snapshot sidecar not written: %s %s", copied.path, exc)
        for leftover in (copied.path, metadata.sidecar_of(copied.path)):
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise SnapshotError(
            f"The snapshot's sidecar could not be written ({exc.strerror}); it was discarded."
        ) from exc
    logger.info("snapshot created path=%s size=%d kind=%s", copied.path, copied.size, kind)
    return snapshot


@signals.timed("snapshot.create")
def create_snapshot(
    database: str,
    *,
    note: str = "",
    kind: str = Kind.MANUAL,
    username: str = "",
    request: HttpRequest | None = None,
    progress: Progress | None = None,
) -> Snapshot:
    """Snapshot the live database `database` into its snapshots folder and audit it."""
    alias = _alias(database)
    try:
        with folder_lock(folder_for(database), exclusive=False, timeout=LOCK_TIMEOUT):
            snapshot = _create(database, kind=kind, note=note, username=username, progress=progress)
    except (SnapshotError, OSError) as exc:
        _audit_failure(
            "snapshot.create", alias, exc, target=database, request=request, username=username
        )
        if isinstance(exc, OSError):
            raise SnapshotError(f"The snapshot could not be taken: {exc.strerror}.") from exc
        raise
    _audit(
        "snapshot.create",
        alias,
        snapshot,
        request=request,
        username=username,
        detail=(
            f"kind={kind} size={snapshot.size} sha256={snapshot.sha256} "
            f"attachments={len(snapshot.payloads)} note={snapshot.note}"
        ),
    )
    return snapshot


def delete_snapshot(
    database: str, name: str, *, username: str = "", request: HttpRequest | None = None
) -> Snapshot:
    """Delete one snapshot (and its sidecar) of `database`."""
    alias = _alias(database)
    try:
        with folder_lock(folder_for(database), exclusive=True, timeout=LOCK_TIMEOUT):
            snapshot = get_snapshot(database, name)
            _remove(snapshot)
    except SnapshotError as exc:
        _audit_failure(
            "snapshot.delete",
            alias,
            exc,
            target=str(folder_for(database) / name),
            request=request,
            username=username,
        )
        raise
    _audit(
        "snapshot.delete",
        alias,
        snapshot,
        request=request,
        username=username,
        detail=f"created {snapshot.created_at.isoformat()} by {snapshot.created_by or '?'}",
    )
    return snapshot


def _remove(snapshot: Snapshot) -> None:
    try:
        snapshot.path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SnapshotError(
            f"The snapshot {snapshot.name} cannot be deleted: {exc.strerror}."
        ) from exc
    with contextlib.suppress(FileNotFoundError):
        metadata.sidecar_of(snapshot.path).unlink()


def verify_restorable(snapshot: Snapshot, fd: int, *, allow_old_schema: bool) -> None:
    """Refuse a damaged, altered or incompatible snapshot before anything is touched.

    `fd` is the descriptor snapshots.folder checked: the SHA-256 is computed from it, so the
    bytes verified are those of the regular file that was listed, whatever the name holds now.
    """
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="snapshot-check") as pool:
        checked = pool.submit(check_integrity, snapshot.path)
        digest = pool.submit(sha256_of_descriptor, fd)
        problem = checked.result()
        actual = digest.result()
    if problem:
        raise SnapshotError(
            f"The snapshot {snapshot.name} is damaged and cannot be restored ({problem}). "
            "The database was not changed."
        )
    if actual != snapshot.sha256:
        raise SnapshotError(
            f"The snapshot {snapshot.name} no longer matches the checksum recorded when it was "
            "taken; it was altered or damaged and cannot be restored. The database was not "
            "changed."
        )
    refuse_schema(
        snapshot, lambda: inspect_database(str(snapshot.path)), allow_old_schema=allow_old_schema
    )


def refuse_schema(
    snapshot: Snapshot, validate: Callable[[], DatabaseInfo], *, allow_old_schema: bool
) -> None:
    """Refuse a snapshot whose content cannot be validated (`validate`: the snapshot file's
    validation, or that of the database it was restored into) or whose schema (against the
    code) cannot be restored here."""
    try:
        state = validate().state
    except ValidationFailed as exc:
        raise SnapshotError(
            f"The snapshot {snapshot.name} cannot be restored: {exc.reason} "
            "The database was not changed."
        ) from None
    if state is SchemaState.UP_TO_DATE or (
        allow_old_schema and state is SchemaState.NEEDS_MIGRATION
    ):
        return
    advice = {
        SchemaState.NEEDS_MIGRATION: " Restore it with `manage.py snapshot restore "
        "--allow-old-schema`, then migrate the database.",
        SchemaState.NEWER: " It was taken by a newer version of NukeWorks.",
        SchemaState.NOT_NUKEWORKS: "",
    }[state]
    raise SnapshotError(
        f"The snapshot {snapshot.name} cannot be restored here: {state.label}.{advice} "
        "The database was not changed."
    )


def _latest_audit_time(snapshot: Path) -> datetime | None:
    """Return when the snapshot's newest audit entry was written (None if it has none)."""
    table = AuditEntry._meta.db_table
    uri = sqlite_uri(snapshot.resolve(), "ro")
    try:
        conn = sqlite3.connect(uri, uri=True)
        try:
            row = conn.execute(f'SELECT max(created_at) FROM "{table}"').fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    value = parse_datetime(str(row[0])) if row and row[0] else None
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


# What is carried of an audit entry newer than the restored snapshot.
_AUDIT_FIELDS = (
    "created_at",
    "username",
    "user_id",
    "action",
    "target",
    "outcome",
    "detail",
    "remote_addr",
)


def _audit_since(alias: str, since: datetime | None) -> list[dict]:
    rows = AuditEntry.objects.using(alias).order_by("-created_at", "-id")
    if since is not None:
        rows = rows.filter(created_at__gt=since)
    return list(reversed(rows.values(*_AUDIT_FIELDS)[:MAX_CARRIED_AUDIT]))


def _carry_audit(alias: str, rows: list[dict]) -> None:
    """Write `rows` (audit entries newer than the restored snapshot) into the database."""
    if not rows:
        return
    users = dict(
        get_user_model()
        ._default_manager.using(alias)
        .filter(pk__in={r["user_id"] for r in rows if r["user_id"]})
        .values_list("pk", "username")
    )
    entries = [
        AuditEntry(
            **{
                **row,
                # An id means a person only in the file it came from: keep it if it still does.
                "user_id": row["user_id"] if users.get(row["user_id"]) == row["username"] else None,
            }
        )
        for row in rows
    ]
    created = AuditEntry.objects.using(alias).bulk_create(entries)
    # created_at is auto_now_add, which bulk_create overwrites; put the real times back.
    for entry, row in zip(created, rows, strict=True):
        entry.created_at = row["created_at"]
    if all(entry.pk for entry in created):
        AuditEntry.objects.using(alias).bulk_update(created, ["created_at"])


@contextlib.contextmanager
def _maintenance(database: str) -> Iterator[None]:
    """Hold the database alone (maintenance_gate): writes wait, none falls between the
    safety snapshot and the restore."""
    try:
        with gate.exclusive(engines.register(database).path, timeout=LOCK_TIMEOUT):
            yield
    except gate.GateClosed:
        raise SnapshotBusy(
            f"Requests kept working on this database for {LOCK_TIMEOUT:g} s; nothing was "
            "restored. Try again in a moment."
        ) from None


@signals.timed("snapshot.restore")
def restore_snapshot(
    database: str,
    name: str,
    *,
    username: str = "",
    request: HttpRequest | None = None,
    progress: Progress | None = None,
    allow_old_schema: bool = False,
) -> RestoreResult:
    """Bring `database` back to snapshot `name`, after taking a safety snapshot of it.

    The snapshot is verified first (its recorded SHA-256, then quick_check and its schema
    against the code for a file, `pg_restore --list` and a restore into a fresh database for
    PostgreSQL); a snapshot that fails leaves the database untouched. A file's content is
    written into the live file through SQLite's backup API in one transaction (never by
    replacing the file under open connections); a PostgreSQL database is swapped with the
    freshly restored one (see _restore_postgres). Then every cached connection to it is closed.
    """
    alias = _alias(database)
    try:
        restore = _restore_postgres if catalog.is_target(database) else _restore_file
        result = restore(
            database,
            name,
            alias,
            username=username,
            request=request,
            progress=progress,
            allow_old_schema=allow_old_schema,
        )
    except (SnapshotError, DatabaseError) as exc:
        _audit_failure(
            "snapshot.restore",
            alias,
            exc,
            target=str(folder_for(database) / name),
            request=request,
            username=username,
        )
        if isinstance(exc, DatabaseError):
            raise SnapshotError(f"The restore could not be completed: {exc}") from exc
        raise
    snapshot = result.restored
    if result.safety is not None:
        safety = f"safety snapshot {result.safety.name}"
    else:
        safety = (
            "SAFETY SNAPSHOT FAILED: the database as it was is kept on its server as "
            f"{result.kept_database}"
        )
    downtime = f"; closed to clients for {result.downtime:.3f} s" if result.downtime else ""
    _audit(
        "snapshot.restore",
        alias,
        snapshot,
        request=request,
        username=username,
        detail=(
            f"{safety}; snapshot taken {snapshot.created_at.isoformat()}; "
            f"{result.carried_audit_entries} later audit entries carried over{downtime}"
        ),
    )
    logger.info("snapshot restored database=%s snapshot=%s", database, snapshot.name)
    return result


def _restore_file(
    database: str,
    name: str,
    alias: str,
    *,
    username: str,
    request: HttpRequest | None,
    progress: Progress | None,
    allow_old_schema: bool,
) -> RestoreResult:
    """Restore a SQLite file: safety snapshot, then the snapshot written into the live file."""
    # First the gate (no request works on the database until the restore is over), then
    # the folder: a request taking a snapshot holds the gate while it waits for the folder.
    with (
        _maintenance(database),
        folder_lock(folder_for(database), exclusive=True, timeout=LOCK_TIMEOUT),
        _held_open(database, name) as (snapshot, fd),
    ):
        verify_restorable(snapshot, fd, allow_old_schema=allow_old_schema)
        safety = _safety_snapshot(database, snapshot, username)
        _audit_safety(alias, safety, request=request, username=username)
        carried = _audit_since(alias, _latest_audit_time(snapshot.path))
        # This thread's own connection must not hold a transaction during the restore.
        connections[alias].close()
        # SQLite opens the snapshot by its name: it must still be the file verified above
        # (a link put in its place meanwhile is refused; the window left is this call).
        if not folder_content.is_still(snapshot.path, fd):
            raise SnapshotError(
                f"The snapshot {snapshot.name} was replaced while it was being restored. "
                f"The database was not changed; the safety snapshot {safety.name} holds "
                "it as it is."
            )
        try:
            _restore_into(snapshot.path, database, progress=progress)
        except CopyFailed as exc:
            raise SnapshotError(
                f"{exc} The safety snapshot {safety.name} holds the database as it was."
            ) from exc
        finally:
            engines.dispose(database)
        carried_count = _carry_audit_logged(alias, carried)
    return RestoreResult(snapshot, safety, carried_count)


def _safety_snapshot(
    database: str, restoring: Snapshot, username: str, *, source_dbname: str | None = None
) -> Snapshot:
    """Take the safety snapshot of a restore of `restoring` (the caller holds the folder
    lock); `source_dbname` as in _create."""
    return _create(
        database,
        kind=Kind.SAFETY,
        note=f"Automatic safety snapshot before restoring {restoring.name}",
        username=username,
        progress=None,
        source_dbname=source_dbname,
    )


def _audit_safety(
    alias: str, safety: Snapshot, *, request: HttpRequest | None, username: str
) -> None:
    _audit(
        "snapshot.create",
        alias,
        safety,
        request=request,
        username=username,
        detail=f"kind=safety size={safety.size} sha256={safety.sha256}",
    )


def _carry_audit_logged(alias: str, carried: list[dict]) -> int:
    """Carry audit entries into the restored database; return how many were carried."""
    try:
        _carry_audit(alias, carried)
    except DatabaseError as exc:
        # The restore itself succeeded; the entries remain in the safety snapshot.
        logger.error("audit entries not carried over after restore: %s", exc)
    return len(carried)


def _verify_archive(snapshot: Snapshot, fd: int, url: catalog.PostgresURL) -> None:
    """Refuse an altered or unreadable pg_dump archive before anything is touched."""
    if sha256_of_descriptor(fd) != snapshot.sha256:
        raise SnapshotError(
            f"The snapshot {snapshot.name} no longer matches the checksum recorded when it was "
            "taken; it was altered or damaged and cannot be restored. The database was not "
            "changed."
        )
    try:
        pg.check_archive(fd, url)
    except pg.PgFailed as exc:
        raise SnapshotError(
            f"The snapshot {snapshot.name} is damaged and cannot be restored ({exc}). "
            "The database was not changed."
        ) from None


@contextlib.contextmanager
def _server_lock(url: catalog.PostgresURL) -> Iterator[psycopg.Connection]:
    """Hold the server-wide lock of the database's restores and migrations (snapshots.pg).

    The calling request first stops holding its own database's gate: waiting for the lock
    while holding it could keep another server thread's swap waiting at the gate.
    """
    gate.leave_all()
    try:
        with pg.maintenance_lock(url, LOCK_TIMEOUT) as conn:
            yield conn
    except pg.PgBusy as exc:
        raise SnapshotBusy(str(exc)) from None
    except pg.PgFailed as exc:
        raise SnapshotError(f"{exc} The database was not changed.") from None


def _restore_postgres(
    database: str,
    name: str,
    alias: str,
    *,
    username: str,
    request: HttpRequest | None,
    progress: Progress | None,
    allow_old_schema: bool,
) -> RestoreResult:
    """Restore a PostgreSQL database: into a fresh database, then swap (snapshots.pg).

    1. The archive is verified (SHA-256, `pg_restore --list`) and restored into
       `<db>__restore_<stamp>` while the live database keeps serving; its schema is checked.
    2. The swap, for milliseconds: this server's requests wait at the gate, every other
       server's sessions are ended and refused (a 503 that says nothing was saved); the live
       database is renamed `<db>__pre_<stamp>`, the restored one takes its name, in one
       transaction. Nothing can be written to the old database after it was closed, so it
       holds exactly the last acknowledged state.
    3. The old database is dumped as the safety snapshot, its audit entries newer than the
       snapshot are carried into the restored one, and only then is it dropped. If its dump
       fails it is kept on the server and the result says so.
    A failure before the swap commits leaves the live database as it was, open to clients.
    """
    url = _entry(database).url
    live = url.dbname
    scratch = pg.work_name(live, "restore")
    old = pg.work_name(live, "pre")
    table = AuditEntry._meta.db_table
    with _server_lock(url) as admin, contextlib.ExitStack() as cleanup:
        # Never left behind: after the swap the name is gone and this does nothing.
        cleanup.callback(pg.drop_quietly, url, scratch)
        # Shared: snapshots may still be taken meanwhile (the restore reads the archive through
        # the descriptor it verified), but none deleted or pruned; another restore or migration
        # of this database is kept out by the server lock.
        with (
            folder_lock(folder_for(database), exclusive=False, timeout=LOCK_TIMEOUT),
            _held_open(database, name) as (snapshot, fd),
        ):
            _verify_archive(snapshot, fd, url)
            if progress is not None:
                progress(0, snapshot.size)
            try:
                pg.restore_new(url, scratch, fd)
            except pg.PgFailed as exc:
                raise SnapshotError(
                    f"The snapshot {snapshot.name} could not be restored ({exc}). "
                    "The database was not changed."
                ) from None
        restored_url = url.with_dbname(scratch)
        refuse_schema(
            snapshot,
            lambda: postgres.inspect(database, restored_url),
            allow_old_schema=allow_old_schema,
        )
        try:
            since = pg.latest_audit_time(restored_url, table)
        except psycopg.Error:
            since = None
        if progress is not None:
            progress(snapshot.size, snapshot.size)
        downtime = _swap(database, alias, admin, url, scratch, old)
        # The restore is done: what follows never undoes it, and a failure is reported.
        engines.dispose(database, everywhere=True)
        return _after_swap(
            database,
            alias,
            snapshot,
            admin,
            url,
            old,
            since,
            downtime,
            username=username,
            request=request,
        )


def _swap(
    database: str,
    alias: str,
    admin: psycopg.Connection,
    url: catalog.PostgresURL,
    replacement: str,
    old: str,
) -> float:
    """Put `replacement` in place of the live database (snapshots.pg.swap) while nobody can
    work on it; return how long the database refused clients (seconds)."""
    began = time.monotonic()
    ended = 0
    try:
        with _maintenance(database):
            connections[alias].close()
            began = time.monotonic()
            with pg.closed(admin, url, url.dbname) as ended:
                pg.swap(admin, url.dbname, replacement, old)
    except psycopg.Error as exc:
        # The renames are one transaction: either they committed (the replaced database is
        # `old`) or the live database is untouched. Ask the server which.
        problem = postgres.describe_error(exc)
        committed = pg.swap_committed(url, old)
        if committed is None:
            raise SnapshotError(
                f"The restore could not be completed ({problem}) and the server cannot say "
                f"whether the databases were swapped: the database as it was is either still "
                f"live or kept as {old}. Nothing is lost; check the PostgreSQL server."
            ) from None
        if not committed:
            raise SnapshotError(
                f"The databases could not be swapped ({problem}). The database was not changed."
            ) from None
        logger.error("swap of %s committed, then failed: %s", database, problem)
    downtime = time.monotonic() - began
    logger.info(
        "postgresql swap database=%s downtime=%.3fs sessions_ended=%d", database, downtime, ended
    )
    return downtime


def _after_swap(
    database: str,
    alias: str,
    snapshot: Snapshot,
    admin: psycopg.Connection,
    url: catalog.PostgresURL,
    old: str,
    since: datetime | None,
    downtime: float,
    *,
    username: str,
    request: HttpRequest | None,
) -> RestoreResult:
    """Dump the replaced database as the safety snapshot, carry its later audit entries,
    then drop it; keep it (and say so) if its dump fails."""
    old_url = url.with_dbname(old)
    carried: list[dict] = []
    safety: Snapshot | None = None
    try:
        pg.allow_connections(admin, old)
        carried = pg.audit_rows_since(
            old_url, AuditEntry._meta.db_table, _AUDIT_FIELDS, since, MAX_CARRIED_AUDIT
        )
    except psycopg.Error as exc:
        logger.error("audit entries of %s not read: %s", old, postgres.describe_error(exc))
    try:
        with folder_lock(folder_for(database), exclusive=False, timeout=LOCK_TIMEOUT):
            safety = _safety_snapshot(database, snapshot, username, source_dbname=old)
    except SnapshotError as exc:
        logger.error("safety snapshot of %s failed, database kept: %s", old, exc)
    kept = ""
    if safety is None or not pg.drop_quietly(url, old):
        kept = old
    if safety is not None:
        _audit_safety(alias, safety, request=request, username=username)
    carried_count = _carry_audit_logged(alias, carried)
    return RestoreResult(snapshot, safety, carried_count, kept_database=kept, downtime=downtime)


def prune_plan(
    database: str, now: datetime | None = None
) -> tuple[retention.Policy, list[Snapshot]]:
    """Return the database's retention policy and the snapshots it would delete now."""
    policy = retention.load(_alias(database))
    return policy, retention.plan(list_snapshots(database), policy, now or datetime.now(UTC))


def prune(
    database: str,
    *,
    username: str = "",
    request: HttpRequest | None = None,
    now: datetime | None = None,
) -> list[Snapshot]:
    """Delete the snapshots the database's retention policy no longer keeps; return them."""
    alias = _alias(database)
    folder = folder_for(database)
    with folder_lock(folder, exclusive=True, timeout=LOCK_TIMEOUT):
        policy, doomed = prune_plan(database, now)
        for snapshot in doomed:
            _remove(snapshot)
        # No snapshot is being written while the exclusive lock is held: any partial file
        # left here is from a copy that crashed.
        if folder.is_dir():
            for leftover in folder.glob(".*.partial*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
    _audit(
        "snapshot.prune",
        alias,
        None,
        request=request,
        username=username,
        target=str(folder),
        detail=f"policy: {policy.describe()}; deleted {len(doomed)}: "
        + ", ".join(s.name for s in doomed),
    )
    return doomed
