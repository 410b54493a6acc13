"""New databases made from existing ones: duplicate a database, restore a snapshot as new.

Both write databases/<label>/nukeworks.sqlite the same way:

1. the label is checked and claimed with the marker of a database being prepared
   (provisioning.progress, created exclusively): a taken or invalid label is refused before
   anything is created, two requests for one label cannot both win, and while the copy runs
   the selector lists the database as being prepared, with its progress;
2. the source is copied with snapshots.sqlite_copy.copy_database: SQLite's backup API (or
   the page copier) reading one read transaction, so a database others keep writing gives a
   consistent copy; it is written to a temporary name in the new folder (`.<file>.copying`),
   flushed, and never seen by anybody;
3. the copy is finished there: for `schema_only` its domain emptied (rows of every table but
   the schema's own, the users who are not admins, their sessions and tokens), the new
   display name written into its system_settings, an audit entry recorded in it;
4. the attachments it references are carried from the source's payload store (hard links,
   copies across file systems; payloads.carry) before the file is visible;
5. the file is linked into place (never over an existing one), the folder flushed, and the
   marker removed.

Any failure removes what this call made (the temporary file, carried links, the marker, the
folder when it made it) and leaves the source untouched. Every attempt is audited in the
source database (success or failure) and a success also in the new one.

A PostgreSQL database of the catalog (`postgresql:<label>`) is duplicated on its own server
with its entry's credentials: the same claim and marker, then pg_dump | pg_restore into a new
database `nw_<new label>__building_<8 hex>` (provisioning.pgcopy: one consistent snapshot,
writers not blocked), finished through a connection alias of its own (display name,
schema-only emptying, the audit entry), its attachments carried from
databases/<label>/payloads/, renamed to `nw_<new label>` and only then registered in the
catalog under the new label. A failure drops what it made. Restoring a snapshot of a
PostgreSQL database as a new one is refused (restore it in place instead, see the message).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psycopg
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.http import HttpRequest

from audit import log as audit_log
from bundles import newdb
from bundles.package import BundleError
from dbselect import catalog, engines
from dbselect.catalog import postgres, registry
from dbselect.engines.cache import publish_alias
from dbselect.files.schema import SchemaState
from dbselect.files.validation import (
    DatabaseInfo,
    ValidationFailed,
    inspect_database,
    not_ready_reason,
)
from dbselect.layout import is_archived_path, is_snapshot_path, snapshot_dir_for
from dbselect.models import SystemSetting
from payloads import references
from payloads.carry import Carried, carry
from payloads.store import PayloadError, PayloadStore, fsync_folder
from provisioning import pgcopy, progress
from provisioning.service import MAX_DISPLAY_NAME, ProvisioningError, _refuse_taken, check_label
from snapshots import folder as snapshot_folder
from snapshots import service as snapshots
from snapshots.locks import folder_lock
from snapshots.sqlite_copy import CopyFailed, copy_database

logger = logging.getLogger("nukeworks.provisioning")

Progress = Callable[[int, int], None]

COPY_ACTION = "database.copy"
RESTORE_AS_NEW_ACTION = "database.restore_as_new"
TEMP_SUFFIX = ".copying"
# Seconds between two writes of the marker while a copy reports progress.
MARKER_INTERVAL = 0.2
# Seconds a copy waits for the snapshots folder or the payload store of its source.
LOCK_TIMEOUT = 30.0
# system_settings keys that describe a seed package's content: a schema-only copy holds none.
SEED_CONTENT_KEYS = (newdb.SEED_NAME, newdb.SEED_VERSION)
# Tables a schema-only copy keeps whole: the schema's own bookkeeping, groups and permissions.
KEPT_TABLES = frozenset(
    {
        "django_migrations",
        "django_content_type",
        "auth_permission",
        "auth_group",
        "auth_group_permissions",
        "system_settings",
    }
)


@dataclass(frozen=True)
class NewCopy:
    """A database made by `duplicate` or `restore_as_new`."""

    label: str
    # The new file, or the target postgresql:<label> of a new PostgreSQL database.
    path: Path | str
    display_name: str
    source: str
    size: int
    carried: Carried
    schema_only: bool = False
    seconds: float = 0.0
    # For a restore as new: the snapshot, and the schema state it was taken at.
    snapshot: str = ""
    schema_state: str = ""

    def describe(self) -> str:
        """Return a one-line summary (messages, command output, audit entries)."""
        what = "schema-only copy" if self.schema_only else "copy"
        if self.snapshot:
            what = f"snapshot {self.snapshot} restored as new"
        return (
            f"{what} “{self.display_name}” at {self.path} ({self.size:,} bytes, "
            f"{self.carried.describe()}, {self.seconds:.1f} s)"
        )


# -- public API ----------------------------------------------------------------------------


def duplicate(
    source: str,
    label: str,
    *,
    display_name: str = "",
    schema_only: bool = False,
    requested_by: str = "",
    via: str = "",
    request: HttpRequest | None = None,
    progress_callback: Progress | None = None,
) -> NewCopy:
    """Copy the database at `source` (live or not) into databases/<label>/; see the module.

    Raise ProvisioningError: 400 invalid label or source, 409 label taken, 500 copy failed.
    """
    if catalog.is_target(source):
        return _duplicate_postgres(
            source,
            label,
            display_name=display_name,
            schema_only=schema_only,
            requested_by=requested_by,
            via=via,
            request=request,
        )
    source = os.path.normpath(os.path.abspath(source))
    started = time.monotonic()
    try:
        _check_source(source)
    except ProvisioningError as exc:
        # Never written into a file that is no usable database (a snapshot, another program's
        # file): the request's own database, or the log only.
        _audit_source(
            None,
            COPY_ACTION,
            "failure",
            f"{source} → {label}: {exc.message}",
            target=source,
            **_who(requested_by, request),
        )
        raise
    try:
        name = _display_name(display_name, label)
        with _claimed(label) as folder:
            store = PayloadStore.for_database(source)
            with _holding_store(store):
                made = _make(
                    folder,
                    label,
                    name,
                    copy_from=source,
                    source_store=store,
                    schema_only=schema_only,
                    progress_callback=progress_callback,
                    stamp=lambda alias, path: _audit_new(
                        alias,
                        COPY_ACTION,
                        path,
                        (
                            f"{'schema-only ' if schema_only else ''}copy of {source}, "
                            f"display name “{name}”, via {via or '-'}"
                        ),
                        requested_by,
                    ),
                )
    except ProvisioningError as exc:
        _audit_source(
            source,
            COPY_ACTION,
            "failure",
            f"label {label}: {exc.message}",
            **_who(requested_by, request),
        )
        raise
    result = NewCopy(
        label=label,
        path=made.path,
        display_name=name,
        source=source,
        size=made.size,
        carried=made.carried,
        schema_only=schema_only,
        seconds=time.monotonic() - started,
    )
    _audit_source(
        source,
        COPY_ACTION,
        "success",
        f"{result.describe()}, via {via or '-'}",
        target=str(result.path),
        **_who(requested_by, request),
    )
    return result


def restore_as_new(
    database: str,
    snapshot_name: str,
    label: str,
    *,
    display_name: str = "",
    requested_by: str = "",
    via: str = "",
    request: HttpRequest | None = None,
    progress_callback: Progress | None = None,
) -> NewCopy:
    """Make databases/<label>/ from the snapshot `snapshot_name` of `database`.

    The snapshot is verified as a restore verifies it (quick_check, the SHA-256 its sidecar
    recorded, a schema this code can work on) and copied through SQLite; the live database
    is never touched. A snapshot taken before the latest migrations is accepted: the new
    database then asks its admins to migrate it when they select it. Raise
    ProvisioningError (404 no such snapshot, 400/409 as `duplicate`).
    """
    if catalog.is_target(database):
        message = (
            "A snapshot of a PostgreSQL database is not restored as a new database here: "
            "restore it in place from the Snapshots page (a safety snapshot is taken first), "
            "or duplicate the database first and restore the snapshot into the duplicate. "
            "No database was created."
        )
        _audit_source(
            database,
            RESTORE_AS_NEW_ACTION,
            "failure",
            f"snapshot {snapshot_name}, label {label}: {message}",
            **_who(requested_by, request),
        )
        raise ProvisioningError(message, code="not_supported", status=409)
    database = os.path.normpath(os.path.abspath(database))
    started = time.monotonic()
    snapshot: snapshots.Snapshot | None = None
    try:
        _check_source(database)
    except ProvisioningError as exc:
        _audit_source(
            None,
            RESTORE_AS_NEW_ACTION,
            "failure",
            f"{database} snapshot {snapshot_name} → {label}: {exc.message}",
            target=database,
            **_who(requested_by, request),
        )
        raise
    try:
        name = _display_name(display_name, label)
        check_label(label)
        _refuse_taken(label)  # before the snapshot is read whole to be verified
        # The folder stays as it is while the snapshot is read: a delete or prune waits.
        with folder_lock(snapshots.folder_for(database), exclusive=False, timeout=LOCK_TIMEOUT):
            snapshot, handle = _open_snapshot(database, snapshot_name)
            with handle:
                fd = handle.fileno()
                try:
                    snapshots.verify_restorable(snapshot, fd, allow_old_schema=True)
                except snapshots.SnapshotError as exc:
                    raise ProvisioningError(
                        str(exc).replace("The database was not changed.", "").strip()
                        + " No database was created.",
                        code="bad_snapshot",
                    ) from None
                state = inspect_database(str(snapshot.path)).state
                store = PayloadStore.for_database(database)
                with _claimed(label) as folder, _holding_store(store):
                    made = _make(
                        folder,
                        label,
                        name,
                        copy_from=snapshot.path,
                        source_store=store,
                        schema_only=False,
                        progress_callback=progress_callback,
                        still_same=lambda: snapshot_folder.is_still(snapshot.path, fd),
                        extra_hashes=snapshot.payloads,
                        stamp=lambda alias, path: _audit_new(
                            alias,
                            RESTORE_AS_NEW_ACTION,
                            path,
                            (
                                f"restored as new from snapshot {snapshot.name} of {database} "
                                f"(taken {snapshot.created_at:%Y-%m-%d %H:%M:%S} UTC), display "
                                f"name “{name}”, via {via or '-'}"
                            ),
                            requested_by,
                        ),
                    )
    except (ProvisioningError, snapshots.SnapshotError) as exc:
        message = exc.message if isinstance(exc, ProvisioningError) else str(exc)
        _audit_source(
            database,
            RESTORE_AS_NEW_ACTION,
            "failure",
            f"snapshot {snapshot_name}, label {label}: {message}",
            target=str(snapshots.folder_for(database) / str(snapshot_name)),
            **_who(requested_by, request),
        )
        if isinstance(exc, snapshots.SnapshotBusy):
            raise ProvisioningError(str(exc), code="busy", status=409) from exc
        if isinstance(exc, snapshots.SnapshotError):
            raise ProvisioningError(str(exc), code="bad_snapshot") from exc
        raise
    result = NewCopy(
        label=label,
        path=made.path,
        display_name=name,
        source=str(snapshot.path),
        size=made.size,
        carried=made.carried,
        seconds=time.monotonic() - started,
        snapshot=snapshot.name,
        schema_state=state.value,
    )
    _audit_source(
        database,
        RESTORE_AS_NEW_ACTION,
        "success",
        f"{result.describe()}, via {via or '-'}",
        target=str(result.path),
        **_who(requested_by, request),
    )
    return result


# -- checks --------------------------------------------------------------------------------


def _display_name(display_name: str, label: str) -> str:
    return " ".join(str(display_name or "").split())[:MAX_DISPLAY_NAME] or str(label).title()


def _check_source(source: str) -> None:
    """Refuse a source that is no NukeWorks database this code can copy."""
    if is_snapshot_path(source):
        raise ProvisioningError(
            "This file is a snapshot: restore it as a new database instead "
            "(copydb --from-snapshot, or “Restore as new database…” on the Snapshots page).",
            code="invalid_source",
        )
    if is_archived_path(os.path.realpath(source)):
        raise ProvisioningError(
            "This database is archived: bring it back first (manage.py archivedb --restore), "
            "then copy it.",
            code="invalid_source",
        )
    _check_copyable(lambda: inspect_database(source))


def _check_copyable(validate: Callable[[], DatabaseInfo]) -> None:
    """Refuse a source its validation (`validate`, a file's or a PostgreSQL database's)
    refuses, or that is no ready NukeWorks database this code can copy."""
    try:
        info = validate()
    except ValidationFailed as exc:
        raise ProvisioningError(
            f"The database to copy cannot be used: {exc.reason}", code="invalid_source"
        ) from None
    if info.state in (SchemaState.NOT_NUKEWORKS, SchemaState.NEWER):
        raise ProvisioningError(
            f"The database to copy cannot be copied: {info.state.label}.", code="invalid_source"
        )
    reason = not_ready_reason(info)
    if reason:
        raise ProvisioningError(reason, code="invalid_source")


def _open_snapshot(database: str, name: str) -> tuple[snapshots.Snapshot, BinaryIO]:
    try:
        return snapshots.open_snapshot(database, name)
    except snapshots.SnapshotNotFound as exc:
        raise ProvisioningError(str(exc), code="unknown_snapshot", status=404) from None


# -- claiming the label and cleaning up ----------------------------------------------------


@contextlib.contextmanager
def _claimed(label: str) -> Iterator[Path]:
    """Claim databases/<label>/ for this copy (the marker, created exclusively), hold its
    builder lock, and on failure remove everything the block made there."""
    check_label(label)
    _refuse_taken(label)
    folder = progress.folder_for(label)
    made_folder = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    if not progress.claim(folder):
        _refuse_taken(label)  # somebody else claimed it a moment ago
        raise ProvisioningError(
            f"The label {label!r} was taken a moment ago.", code="label_taken", status=409
        )
    final = progress.database_path(label)
    done = False
    try:
        with progress.builder_lock(folder):
            yield folder
            done = True
    except progress.BuilderBusy:
        raise ProvisioningError(
            f"The database {label!r} is being prepared by someone else.",
            code="label_taken",
            status=409,
        ) from None
    finally:
        if done or final.exists():
            progress.clear(folder)
        else:
            # The folder was empty or absent (_refuse_taken): all it holds now is ours.
            _clean_failed(folder)
            with contextlib.suppress(OSError):
                (folder / progress.LOCK_FILE).unlink(missing_ok=True)
                if made_folder:
                    folder.rmdir()


def _clean_failed(folder: Path) -> None:
    """Remove what a failed copy made in `folder` (its own files only)."""
    final = folder / progress.database_path(folder.name).name
    newdb.remove_file(_temp_for(final))
    store = PayloadStore.for_database(final).root
    if store.is_dir():
        # Links or copies this copy carried there: the source keeps its own.
        shutil.rmtree(store, ignore_errors=True)
    with contextlib.suppress(OSError):
        snapshot_dir_for(final).rmdir()
    progress.clear(folder)


def _temp_for(final: Path) -> Path:
    return final.parent / f".{final.name}{TEMP_SUFFIX}"


@contextlib.contextmanager
def _holding_store(store: PayloadStore) -> Iterator[None]:
    """Hold the source's payload store as a writer does, from the copy until its attachments
    are carried: the collector cannot remove a payload the copy references meanwhile."""
    if not store.root.is_dir():
        yield  # no attachments at all: nothing to hold (and no folder made in the source)
        return
    try:
        with store.writing(timeout=LOCK_TIMEOUT):
            yield
    except PayloadError as exc:
        raise ProvisioningError(str(exc), code="busy", status=409) from exc


# -- making the copy ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Made:
    path: Path
    size: int
    carried: Carried


class _Reporter:
    """The copy's progress: the marker (every MARKER_INTERVAL s at most) and the caller's."""

    def __init__(self, folder: Path, job: str, name: str, callback: Progress | None) -> None:
        self.folder, self.job, self.name, self.callback = folder, job, name, callback
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self.last >= MARKER_INTERVAL:
            self.last = now
            self.write(done, total, f"Copying: {done:,} of {total:,} bytes…")
        if self.callback is not None:
            self.callback(done, total)

    def write(self, done: int, total: int, message: str) -> None:
        progress.write(
            self.folder,
            state=progress.BUILDING,
            job=self.job,
            done=done,
            total=total,
            message=message,
            display_name=self.name,
        )


def _make(
    folder: Path,
    label: str,
    name: str,
    *,
    copy_from: str | Path,
    source_store: PayloadStore,
    schema_only: bool,
    progress_callback: Progress | None,
    stamp: Callable[[str, Path], None],
    still_same: Callable[[], bool] | None = None,
    extra_hashes: tuple[str, ...] = (),
) -> _Made:
    """Copy, finish, carry and place (the caller holds the label's claim)."""
    final = progress.database_path(label)
    temp = _temp_for(final)
    newdb.remove_file(temp)  # a stale file of a copy that died (we hold the claim)
    reporter = _Reporter(folder, f"copy-{uuid.uuid4().hex}", name, progress_callback)
    reporter.write(0, 0, "Copying…")
    if still_same is not None and not still_same():
        raise ProvisioningError(
            "The snapshot was replaced while it was being read; no database was created.",
            code="bad_snapshot",
        )
    try:
        copied = copy_database(copy_from, temp, progress=reporter)
    except CopyFailed as exc:
        raise ProvisioningError(
            f"{exc} No database was created.", code="copy_failed", status=500
        ) from exc
    if still_same is not None and not still_same():
        raise ProvisioningError(
            "The snapshot was replaced while it was being copied; no database was created.",
            code="bad_snapshot",
        )
    reporter.write(copied.size, copied.size, "Finishing the copy…")
    try:
        if schema_only:
            _empty_domain(temp)
        hashes = _finish(temp, name, final, stamp)
    except (sqlite3.Error, DatabaseError) as exc:
        raise ProvisioningError(
            f"The copy could not be finished: {exc}. No database was created.",
            code="copy_failed",
            status=500,
        ) from exc
    reporter.write(copied.size, copied.size, "Carrying the attachments…")
    target_store = PayloadStore.for_database(final)
    wanted = set(hashes) | set(extra_hashes)
    carried = carry(source_store, target_store, wanted) if wanted else Carried()
    if carried.missing:
        logger.warning(
            "copy %s: %d attachment file(s) missing at the source %s",
            final,
            len(carried.missing),
            source_store.root,
        )
    try:
        newdb.place_new_file(temp, final)
    except FileExistsError:
        raise ProvisioningError(
            f"A database labelled {label!r} appeared meanwhile; nothing was overwritten.",
            code="label_taken",
            status=409,
        ) from None
    fsync_folder(final.parent)
    newdb.remove_file(temp)
    with contextlib.suppress(OSError):
        snapshot_dir_for(final).mkdir(exist_ok=True)
    return _Made(final, final.stat().st_size, carried)


def _empty_domain(path: Path) -> None:
    """Empty the domain of the copy at `path` (ours alone): every table's rows but the
    schema's own (KEPT_TABLES), the users who are neither staff nor superusers and what named
    them; then compact the file. Refuse a result that is not what was asked."""
    user_model = get_user_model()
    users = user_model._meta.db_table
    user_links = {
        field.remote_field.through._meta.db_table: field.m2m_column_name()
        for field in user_model._meta.many_to_many
    }
    kept = KEPT_TABLES | {users} | set(user_links)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA trusted_schema=OFF")
        conn.execute("PRAGMA foreign_keys=OFF")
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        emptied = [t for t in tables if t not in kept]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in emptied:
                conn.execute(f'DELETE FROM "{table}"')
            conn.execute(f'DELETE FROM "{users}" WHERE NOT (is_staff OR is_superuser)')
            for table, column in user_links.items():
                if table in tables:
                    conn.execute(
                        f'DELETE FROM "{table}" WHERE "{column}" NOT IN (SELECT id FROM "{users}")'
                    )
            marks = ", ".join("?" for _ in SEED_CONTENT_KEYS)
            conn.execute(f"DELETE FROM system_settings WHERE key IN ({marks})", SEED_CONTENT_KEYS)
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'").fetchone():
                marks = ", ".join("?" for _ in emptied)
                conn.execute(f"DELETE FROM sqlite_sequence WHERE name IN ({marks})", emptied)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        # The file's own triggers may have written anything: check what was asked.
        left = [t for t in emptied if conn.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()]
        others = conn.execute(
            f'SELECT count(*) FROM "{users}" WHERE NOT (is_staff OR is_superuser)'
        ).fetchone()[0]
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if left or others or broken:
            raise sqlite3.DatabaseError(
                f"the schema-only copy is not empty (tables with rows: {left[:5]}, non-admin "
                f"users: {others}, broken references: {broken[:5]})"
            )
        conn.execute("VACUUM")
    finally:
        conn.close()


def _finish(temp: Path, name: str, final: Path, stamp: Callable[[str, Path], None]) -> set[str]:
    """Name the copy, record its audit entry, flush it; return the payloads it references."""
    alias = engines.register(str(temp)).alias
    try:
        SystemSetting.set_value(SystemSetting.DISPLAY_NAME, name, using=alias)
        stamp(alias, final)
        hashes = references.referenced_by_alias(alias)
        with connections[alias].cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connections[alias].close()
        engines.dispose(str(temp))
    wal = Path(f"{temp}-wal")
    if wal.exists() and wal.stat().st_size:
        raise sqlite3.DatabaseError("the copy could not be written completely (WAL left)")
    return hashes


# -- audit ---------------------------------------------------------------------------------


def audit_refused(request: HttpRequest, action: str, target: str, reason: str) -> None:
    """Record a request refused before any work (an invalid form) in the session's database."""
    audit_log.record(
        action, target=target, outcome="failure", detail=f"refused: {reason}", request=request
    )


def _who(requested_by: str, request: HttpRequest | None) -> dict[str, object]:
    return {"username": requested_by, "request": request}


def _audit_source(
    source: str | None,
    action: str,
    outcome: str,
    detail: str,
    *,
    target: str = "",
    username: str = "",
    request: HttpRequest | None = None,
) -> None:
    """Record `action` in the source database (None: the request's own, or the log only)."""
    alias = engines.register(source).alias if source else None
    audit_log.record(
        action,
        target=target or source or "",
        outcome=outcome,
        detail=detail,
        request=request,
        username=username or None,
        using=alias,
    )


def _audit_new(alias: str, action: str, final: Path, detail: str, requested_by: str) -> None:
    audit_log.record(
        action, target=str(final), detail=detail, username=requested_by or None, using=alias
    )


# -- PostgreSQL ----------------------------------------------------------------------------


def _check_postgres_source(source: str) -> catalog.CatalogEntry:
    """Return the catalog entry of the PostgreSQL database to copy; refuse an unusable one."""
    entry = catalog.entry_for_target(source)
    if entry is None:
        raise ProvisioningError(
            "This PostgreSQL database is no longer in the catalog.", code="invalid_source"
        )
    _check_copyable(lambda: postgres.inspect(entry.target, entry.url))
    return entry


def _duplicate_postgres(
    source: str,
    label: str,
    *,
    display_name: str,
    schema_only: bool,
    requested_by: str,
    via: str,
    request: HttpRequest | None,
) -> NewCopy:
    """Copy the PostgreSQL database `source` into a new one on its server; see the module."""
    started = time.monotonic()
    try:
        entry = _check_postgres_source(source)
        name = _display_name(display_name, label)
        check_label(label)
        final = entry.url.with_dbname(newdb.default_dbname(label))
        with _claimed(label) as folder:
            problem = newdb.postgres_label_problem(label)
            if problem:
                raise ProvisioningError(problem, code="label_taken", status=409)
            store = PayloadStore.for_database(source)
            with _holding_store(store):
                size, carried = _make_postgres(
                    folder, label, name, entry, final, schema_only, source, via, requested_by
                )
            try:
                registry.add(label, final.url(), name, verify=True, request=request)
            except catalog.BadURL as exc:
                pgcopy_drop(final)
                raise ProvisioningError(
                    f"The copy could not be registered: {exc}", code="copy_failed", status=500
                ) from None
            with contextlib.suppress(OSError):
                snapshot_dir_for(catalog.target_for(label)).mkdir(exist_ok=True)
    except ProvisioningError as exc:
        _audit_source(
            source if catalog.entry_for_target(source) else None,
            COPY_ACTION,
            "failure",
            f"label {label}: {exc.message}",
            target=source,
            **_who(requested_by, request),
        )
        raise
    result = NewCopy(
        label=label,
        path=catalog.target_for(label),
        display_name=name,
        source=source,
        size=size,
        carried=carried,
        schema_only=schema_only,
        seconds=time.monotonic() - started,
    )
    _audit_source(
        source,
        COPY_ACTION,
        "success",
        f"{result.describe()} on {final.server()}, via {via or '-'}",
        target=str(result.path),
        **_who(requested_by, request),
    )
    return result


def pgcopy_drop(url: postgres.PostgresURL) -> None:
    """Drop the database `url` names (what a failed copy made); never raise."""
    with contextlib.suppress(psycopg.Error):
        postgres.drop_database(url, url.dbname)


def _make_postgres(
    folder: Path,
    label: str,
    name: str,
    entry: catalog.CatalogEntry,
    final: postgres.PostgresURL,
    schema_only: bool,
    source: str,
    via: str,
    requested_by: str,
) -> tuple[int, Carried]:
    """Dump, restore, finish, carry and rename (the caller holds the label's claim)."""
    temp = final.with_dbname(newdb.temp_dbname(final.dbname, label))
    reporter = _Reporter(folder, f"copy-{uuid.uuid4().hex}", name, None)
    reporter.write(0, 0, "Copying (pg_dump | pg_restore)…")
    try:
        if postgres.database_exists(final, final.dbname):
            raise ProvisioningError(
                f"The server {final.host}:{final.port} has a database named {final.dbname!r} "
                "already; nothing was changed.",
                code="dbname_taken",
                status=409,
            )
        postgres.drop_database(temp, temp.dbname)  # a stale one of a copy that died (ours)
    except psycopg.Error as exc:
        raise ProvisioningError(
            postgres.describe_error(exc), code="postgres_unavailable", status=503
        ) from None
    try:
        size = pgcopy.copy_into_new(entry.url, temp)
    except pgcopy.CopyFailed as exc:
        raise ProvisioningError(
            f"{exc} No database was created.", code="copy_failed", status=500
        ) from exc
    try:
        reporter.write(size, size, "Finishing the copy…")
        hashes = _finish_postgres(label, temp, name, schema_only, source, via, requested_by)
        reporter.write(size, size, "Carrying the attachments…")
        source_store = PayloadStore.for_database(source)
        target_store = PayloadStore.for_database(catalog.target_for(label))
        carried = carry(source_store, target_store, hashes) if hashes else Carried()
        postgres.rename_database(final, temp.dbname, final.dbname)
    except BaseException as exc:
        pgcopy_drop(temp)
        if isinstance(exc, DatabaseError | psycopg.Error | BundleError):
            raise ProvisioningError(
                f"The copy could not be finished: {exc}. No database was created.",
                code="copy_failed",
                status=500,
            ) from exc
        raise
    return size, carried


def _finish_postgres(
    label: str,
    temp: postgres.PostgresURL,
    name: str,
    schema_only: bool,
    source: str,
    via: str,
    requested_by: str,
) -> set[str]:
    """Name the copy, empty its domain (schema-only), record its audit entry; return the
    payloads it references. Through an alias of its own, closed and forgotten at the end."""
    alias = newdb.PG_BUILD_ALIAS.format(label=label)
    building = catalog.CatalogEntry(label, temp)
    publish_alias(alias, catalog.django_settings(building, connections.databases[DEFAULT_DB_ALIAS]))
    try:
        if schema_only:
            _empty_domain_postgres(alias)
        SystemSetting.set_value(SystemSetting.DISPLAY_NAME, name, using=alias)
        _audit_new(
            alias,
            COPY_ACTION,
            catalog.target_for(label),
            (
                f"{'schema-only ' if schema_only else ''}copy of {source}, display name "
                f"“{name}”, via {via or '-'}"
            ),
            requested_by,
        )
        return references.referenced_by_alias(alias)
    finally:
        connections[alias].close()
        with contextlib.suppress(AttributeError):
            del connections[alias]


def _empty_domain_postgres(alias: str) -> None:
    """Empty the domain of the copy behind `alias` (ours alone), as `_empty_domain` does for
    a file: every table but KEPT_TABLES, the users, their links; the non-admin users."""
    user_model = get_user_model()
    users = user_model._meta.db_table
    user_links = {
        field.remote_field.through._meta.db_table: field.m2m_column_name()
        for field in user_model._meta.many_to_many
    }
    connection = connections[alias]
    tables = set(connection.introspection.table_names())
    kept = KEPT_TABLES | {users} | set(user_links)
    emptied = sorted(tables - kept)
    qn = connection.ops.quote_name
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        if emptied:
            cursor.execute(f"TRUNCATE {', '.join(qn(t) for t in emptied)} RESTART IDENTITY")
        for table, column in user_links.items():
            if table in tables:
                cursor.execute(
                    f"DELETE FROM {qn(table)} WHERE {qn(column)} IN "
                    f"(SELECT id FROM {qn(users)} WHERE NOT (is_staff OR is_superuser))"
                )
        cursor.execute(f"DELETE FROM {qn(users)} WHERE NOT (is_staff OR is_superuser)")
        cursor.execute("DELETE FROM system_settings WHERE key = ANY(%s)", [list(SEED_CONTENT_KEYS)])
