"""Archive a database: its whole folder moved aside, never deleted, and brought back on demand.

    databases/<label>/  ->  databases/.archive/<label>-<YYYYmmdd-HHMMSS>/

The folder moves whole (the file, its -wal/-shm if any, snapshots/, payloads/), with one
rename on the same file system, so nothing is copied and nothing is left half-moved. Before
the rename the database is closed to requests: the maintenance gate a restore takes
(dbselect.engines.gate) lets the requests in flight finish their writes and holds new ones,
the WAL is checkpointed into the file, and every worker's connections are disposed. The
scanner never lists dot folders and the selection refuses any path inside .archive/, so an
archived database can be neither listed nor selected; sessions still on it find its file gone
on their next request and fall back to their previous database with the usual banner.

`unarchive` renames an archived folder back to databases/<label>/ (its own label, or a new
one, whose snapshots are then renamed to the new label so they are listed again), refusing a
label that is taken. The operator databases (and the project's `default` database) are never
archived. Every attempt is audited in the database itself.

A PostgreSQL database of the catalog is not archived (it lives on its server, not in the
folder): the refusal says what to do instead (POSTGRES_REFUSAL).
"""

from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest

from audit import log as audit_log
from dbselect import engines, permissions
from dbselect.engines import gate
from dbselect.files.validation import ValidationFailed, inspect_database
from dbselect.layout import archive_dir, preparing, snapshot_dir_for
from payloads.store import fsync_folder
from provisioning import progress
from provisioning.service import ProvisioningError, _refuse_taken, check_label
from snapshots import folder as snapshot_folder
from snapshots import metadata

logger = logging.getLogger("nukeworks.provisioning")

ARCHIVE_ACTION = "database.archive"
UNARCHIVE_ACTION = "database.unarchive"
# Seconds the archive waits for the requests working on the database to finish.
GATE_TIMEOUT = 30.0
POSTGRES_REFUSAL = (
    "{label!r} is a PostgreSQL database: archiving moves a database's folder aside, and a "
    "PostgreSQL database lives on its server. Take a snapshot or export it if you want a copy, "
    "then remove it from the catalog (manage.py catalog remove {label}): the database stays "
    "on its server, and databases/{label}/ keeps its snapshots and attachments, so it can be "
    "registered again. Nothing was changed."
)
ARCHIVED_NAME = re.compile(
    r"^(?P<label>[A-Za-z0-9][A-Za-z0-9_-]{0,39})-(?P<stamp>\d{8}-\d{6})(?:-(?P<n>\d{1,4}))?$"
)


@dataclass(frozen=True)
class ArchivedDatabase:
    """A folder of databases/.archive/."""

    name: str
    path: Path
    label: str
    archived_at: datetime | None
    display_name: str
    size: int
    problem: str = ""

    @property
    def database(self) -> Path:
        return self.path / progress.database_path(self.label).name


def is_protected(path: str | Path) -> bool:
    """Return True for a database that is never archived: an operator database, `default`."""
    real = os.path.realpath(path)
    protected = set(permissions.operator_databases())
    default = settings.DATABASES.get("default", {}).get("NAME")
    if default:
        protected.add(os.path.realpath(str(default)))
    return real in protected


def archive(
    label: str,
    *,
    requested_by: str = "",
    via: str = "",
    request: HttpRequest | None = None,
    timeout: float = GATE_TIMEOUT,
) -> ArchivedDatabase:
    """Move databases/<label>/ to databases/.archive/<label>-<UTC time>/; return where.

    Raise ProvisioningError: 404 no such database, 409 being prepared, protected or busy,
    500 when the folder could not be moved (then it is still in place, untouched).
    """
    check_label(label)
    folder = progress.folder_for(label)
    path = progress.database_path(label)
    entry = None if path.is_file() else progress.catalog_entry(label)
    if entry is not None:
        raise _refused(
            engines.register(entry.target),
            entry.target,
            POSTGRES_REFUSAL.format(label=label),
            {"request": request, "username": requested_by or None},
            code="not_archivable",
            status=409,
        )
    if not path.is_file():
        if preparing(folder) is not None:
            raise ProvisioningError(
                f"The database {label!r} is being prepared and has no file yet: discard it "
                "instead (its progress page, or manage.py discarddb).",
                code="not_archivable",
                status=409,
            )
        raise ProvisioningError(
            f"No database is labelled {label!r}.", code="unknown_database", status=404
        )
    engine = engines.register(str(path))
    who = {"request": request, "username": requested_by or None}
    if is_protected(path):
        message = (
            f"The database {label!r} is an operator database (or the project's default): it "
            "is never archived."
        )
        raise _refused(engine, path, message, who, code="protected", status=409)
    try:
        with gate.exclusive(engine.path, timeout=timeout):
            # No request works on the database from here on: close it everywhere.
            _close(engine)
            target = _new_archive_folder(label)
            os.rename(folder, target)
            fsync_folder(target.parent)
            fsync_folder(folder.parent)
    except gate.GateClosed:
        message = (
            f"Requests kept working on {label!r} for {timeout:g} s; it was not archived. Try "
            "again in a moment."
        )
        raise _refused(engine, path, message, who, code="busy", status=409) from None
    except OSError as exc:
        message = f"The folder of {label!r} could not be moved to the archive: {exc}."
        raise _refused(engine, path, message, who, code="archive_failed", status=500) from exc
    archived = describe(target)
    # Recorded in the database itself, where it now lies (the folder is its history).
    _record_in(
        archived.database,
        ARCHIVE_ACTION,
        target=str(path),
        detail=f"{label} archived to {target}, via {via or '-'}",
        **who,
    )
    logger.info("database archived label=%s folder=%s", label, target)
    return archived


def _refused(
    engine: engines.Engine,
    path: Path | str,
    message: str,
    who: dict[str, Any],
    *,
    code: str,
    status: int,
) -> ProvisioningError:
    """Audit an archive that did not happen (denied: a protected database; else a failure)
    in the database itself; return the error to raise."""
    audit_log.record(
        ARCHIVE_ACTION,
        target=str(path),
        outcome="denied" if code == "protected" else "failure",
        detail=message,
        using=engine.alias,
        **who,
    )
    return ProvisioningError(message, code=code, status=status)


def _close(engine: engines.Engine) -> None:
    """Flush the WAL into the file and close every worker's connections to it."""
    try:
        with connections[engine.alias].cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except DatabaseError as exc:
        # The -wal moves with the folder: SQLite replays it when the file is next opened.
        logger.warning("checkpoint before archiving failed path=%s: %s", engine.path, exc)
    finally:
        connections[engine.alias].close()
    engines.dispose(engine.path, everywhere=True)


def _new_archive_folder(label: str) -> Path:
    folder = archive_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = folder / f"{label}-{stamp}"
    suffix = 1
    while os.path.lexists(target):
        suffix += 1
        target = folder / f"{label}-{stamp}-{suffix}"
    return target


def describe(path: Path) -> ArchivedDatabase:
    """Return what an archived folder holds (read-only: nothing is created in it)."""
    match = ARCHIVED_NAME.match(path.name)
    label = match["label"] if match else path.name
    when = None
    if match:
        when = datetime.strptime(match["stamp"], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    database = path / progress.database_path(label).name
    display_name, problem = label, ""
    try:
        size = database.stat().st_size
    except OSError:
        size, problem = 0, "no database file"
    else:
        try:
            display_name = inspect_database(str(database)).display_name or label
        except ValidationFailed as exc:
            problem = exc.reason
    return ArchivedDatabase(path.name, path, label, when, display_name, size, problem)


def list_archived() -> list[ArchivedDatabase]:
    """Return the archived databases, oldest first."""
    folder = archive_dir()
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    found = [
        describe(Path(entry.path))
        for entry in entries
        if ARCHIVED_NAME.match(entry.name) and entry.is_dir(follow_symlinks=False)
    ]
    return sorted(found, key=lambda a: (a.archived_at or datetime.min.replace(tzinfo=UTC), a.name))


def unarchive(
    name: str,
    *,
    label: str | None = None,
    requested_by: str = "",
    via: str = "",
    request: HttpRequest | None = None,
) -> Path:
    """Bring databases/.archive/<name>/ back as databases/<label>/; return the database path.

    `label` defaults to the one it was archived under. Raise ProvisioningError: 404 no such
    archived folder, 400 invalid label, 409 label taken.
    """
    match = ARCHIVED_NAME.match(str(name))
    source = archive_dir() / str(name)
    if not match or not source.is_dir() or source.is_symlink():
        raise ProvisioningError(
            f"There is no archived database {str(name)[:80]!r} in {archive_dir()} "
            "(manage.py archivedb --list shows them).",
            code="unknown_archive",
            status=404,
        )
    old_label = match["label"]
    archived = source / progress.database_path(old_label).name
    if not archived.is_file():
        raise ProvisioningError(
            f"The archived folder {name} holds no {archived.name}; it is not brought back.",
            code="unknown_archive",
            status=404,
        )
    try:
        label = check_label(label or old_label)
        _refuse_taken(label)
        folder = progress.folder_for(label)
        _move_back(source, folder, label)
    except ProvisioningError as exc:
        # Recorded in the archived database itself (it stays in the archive).
        _record_in(
            archived,
            UNARCHIVE_ACTION,
            target=str(archived),
            outcome="failure",
            detail=f"{name} as {str(label)[:60]!r}: {exc.message}, via {via or '-'}",
            request=request,
            username=requested_by or None,
        )
        raise
    fsync_folder(folder.parent)
    fsync_folder(source.parent)
    path = progress.database_path(label)
    renamed = _relabel_snapshots(path, old_label, label) if label != old_label else 0
    detail = f"{name} brought back from the archive as {label}"
    if renamed:
        detail += f" ({renamed} snapshot(s) renamed to the new label)"
    _record_in(
        path,
        UNARCHIVE_ACTION,
        target=str(path),
        detail=f"{detail}, via {via or '-'}",
        request=request,
        username=requested_by or None,
    )
    logger.info("database unarchived folder=%s label=%s", name, label)
    return path


def _move_back(source: Path, folder: Path, label: str) -> None:
    try:
        os.rename(source, folder)  # onto nothing, or an empty folder; never a full one
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise ProvisioningError(
                f"The folder databases/{label}/ was taken meanwhile; nothing was changed.",
                code="label_taken",
                status=409,
            ) from None
        raise ProvisioningError(
            f"The archived folder could not be moved back: {exc}.",
            code="unarchive_failed",
            status=500,
        ) from exc


def _relabel_snapshots(database: Path, old: str, new: str) -> int:
    """Rename the snapshots taken under label `old` to label `new` (their file names carry
    the label, and a database lists only its own label's): sidecar first, then the file."""
    folder = snapshot_dir_for(database)
    renamed = 0
    for snapshot in snapshot_folder.scan(folder).snapshots:
        if not snapshot.name.startswith(f"{old}-"):
            continue
        name = new + snapshot.name[len(old) :]
        moved = replace(snapshot, name=name, path=folder / name)
        if os.path.lexists(moved.path):
            continue
        try:
            metadata.write_sidecar(moved)
            os.rename(snapshot.path, moved.path)
        except OSError as exc:
            logger.warning("snapshot %s not renamed: %s", snapshot.name, exc)
            metadata.sidecar_of(moved.path).unlink(missing_ok=True)
            continue
        metadata.sidecar_of(snapshot.path).unlink(missing_ok=True)
        renamed += 1
    return renamed


def _record_in(path: Path, action: str, **entry: object) -> None:
    """Record an audit entry in the database at `path`, then close it again."""
    engine = engines.register(str(path))
    try:
        audit_log.record(action, using=engine.alias, **entry)  # type: ignore[arg-type]
    finally:
        connections[engine.alias].close()
        engines.dispose(engine.path)
