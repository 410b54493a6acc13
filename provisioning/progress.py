"""The progress of a database being built: files in its folder that anybody can read.

    databases/<label>/.preparing.json          the marker (dbselect.layout: format, reader)
    databases/<label>/.preparing.lock          flock()ed by the one builder at work (layout)
    databases/<label>/.preparing.request.json  what to build, re-read by a retry (mode 0600)

The marker is written here only, atomically (a temporary file renamed over it), and read by
dbselect (selector, dbstatus) and the API without importing this app. While a database is
being built its folder holds the marker and no database file; the builder renames the file
into place and only then removes the marker. A database built on a PostgreSQL server has the
same folder, marker and request (its payloads and snapshots live there too); it is in place
once it is registered in the catalog under its label (dbselect.catalog). A marker that says
"building" while nobody holds the lock belongs to a builder that died: the database is
"interrupted".
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dbselect import catalog, layout
from dbselect.catalog import postgres
from dbselect.conf import get_config
from dbselect.files import locks
from dbselect.files.validation import ValidationFailed, inspect_database, not_ready_reason
from dbselect.layout import PREPARING_LOCK, PREPARING_MARKER, preparing, preparing_marker_for

LOCK_FILE = PREPARING_LOCK
REQUEST_FILE = ".preparing.request.json"

# What a label's database is doing, as the progress page, its JSON and the API say it.
QUEUED = "queued"  # waiting for a worker
BUILDING = "building"  # a builder is at work
FAILED = "failed"  # the builder gave up; the marker says why
INTERRUPTED = layout.INTERRUPTED  # the marker says building but no builder holds the lock
NOT_READY = "not_ready"  # a file is in place but its seed_status is not "ready"
UNUSABLE = "unusable"  # a file is in place but cannot be read as a database
READY = "ready"  # the file is in place and ready
MISSING = "missing"  # nothing of that label
IN_PROGRESS = (QUEUED, BUILDING)
# Operators may rebuild or discard these.
STOPPED = (FAILED, INTERRUPTED, NOT_READY)


class BuilderBusy(Exception):
    """Another builder holds this label's lock."""


def databases_dir() -> Path:
    """Return the folder of databases/<label>/."""
    return Path(get_config()["DATABASES_DIR"])


def folder_for(label: str) -> Path:
    """Return databases/<label>/."""
    return databases_dir() / label


def database_path(label: str) -> Path:
    """Return databases/<label>/<file>, where the database lies once it is ready."""
    return folder_for(label) / get_config()["DATABASE_FILENAME"]


def _write_json(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    """Write `data` to `path` atomically: readers see the old file or the new one, never half."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, json.dumps(data, sort_keys=True).encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(temporary, path)


def write(
    folder: Path,
    *,
    state: str,
    job: str,
    done: int = 0,
    total: int = 0,
    message: str = "",
    display_name: str = "",
) -> dict[str, Any]:
    """Write the marker of the database being prepared in `folder`; return what was written."""
    data = {
        "state": state,
        "done": done,
        "total": total,
        "message": message,
        "job": job,
        "updated": time.time(),
        "display_name": display_name,
    }
    _write_json(preparing_marker_for(folder), data)
    return data


def claim(folder: Path) -> bool:
    """Create the marker of `folder` if there is none; return False when one exists already.

    Two requests for one label race here: only one creates the file (O_EXCL).
    """
    try:
        fd = os.open(
            preparing_marker_for(folder), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        )
    except FileExistsError:
        return False
    os.close(fd)
    return True


def clear(folder: Path) -> None:
    """Remove the marker and the request of `folder` (its database is ready)."""
    for name in (PREPARING_MARKER, REQUEST_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / name)


def write_request(folder: Path, request: dict[str, Any]) -> None:
    """Keep what to build beside the marker (readable by the server's user only)."""
    _write_json(folder / REQUEST_FILE, request, mode=0o600)


def read_request(folder: Path) -> dict[str, Any] | None:
    """Return what was asked for `folder`, or None when there is no (readable) record."""
    try:
        with open(folder / REQUEST_FILE, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def postgres_request(folder: Path) -> dict[str, Any] | None:
    """Return where a database of `folder` is requested on a PostgreSQL server, or None.

    {"like": <catalog label>, "dbname": …} (the server and credentials of that entry), or
    {"url": <the URL without its password>, "dbname": …} (given on the command line).
    """
    asked = read_request(folder) or {}
    found = asked.get("postgres")
    return found if isinstance(found, dict) else None


def catalog_entry(label: str) -> catalog.CatalogEntry | None:
    """Return the catalog entry `label`, None when there is none or the catalog is down."""
    try:
        return catalog.get(label)
    except Exception:  # the catalog's Redis is down: the file layout still answers
        return None


def target_for(label: str) -> str:
    """Return what a session selects for `label`: its file, or `postgresql:<label>` for a
    database of the catalog (or one being built on a PostgreSQL server)."""
    if not database_path(label).exists() and (
        catalog_entry(label) is not None or postgres_request(folder_for(label)) is not None
    ):
        return catalog.target_for(label)
    return str(database_path(label))


@contextlib.contextmanager
def builder_lock(folder: Path) -> Iterator[None]:
    """Hold `folder`'s builder lock for the block; raise BuilderBusy when someone holds it."""
    try:
        with locks.flocked(folder / LOCK_FILE, exclusive=True, timeout=0):
            yield
    except locks.LockTimeout:
        raise BuilderBusy(str(folder)) from None


@dataclass(frozen=True)
class Status:
    """Where the database `label` stands."""

    label: str
    state: str
    done: int = 0
    total: int = 0
    message: str = ""
    job: str = ""
    updated: float | None = None
    display_name: str = ""

    @property
    def percent(self) -> int:
        if self.state == READY:
            return 100
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def in_progress(self) -> bool:
        return self.state in IN_PROGRESS

    @property
    def stopped(self) -> bool:
        return self.state in STOPPED

    def public(self) -> dict[str, Any]:
        """Return what the progress page's JSON and the API show (no request details)."""
        return {**asdict(self), "percent": self.percent}


def status(label: str, *, holding_lock: bool = False) -> Status:
    """Return where the database `label` stands (read-only).

    `holding_lock`: the caller holds the label's builder lock, so a marker saying "building"
    was left by a builder that died (the lock is ours, not a sign of life).
    """
    folder = folder_for(label)
    path = database_path(label)
    entry = None if path.exists() else catalog_entry(label)
    if path.exists() or entry is not None:
        try:
            if entry is not None:
                info = postgres.inspect(entry.target, entry.url)
            else:
                info = inspect_database(str(path))
        except ValidationFailed as exc:
            return Status(label, UNUSABLE, message=exc.reason)
        reason = not_ready_reason(info)
        name = info.display_name or (entry.display_name if entry else "") or label
        if reason:
            return Status(label, NOT_READY, message=reason, display_name=name)
        return Status(label, READY, message="The database is ready.", display_name=name)
    marker = preparing(folder, check_builder=not holding_lock)
    if marker is None:
        return Status(label, MISSING, message=f"No database is labelled {label!r}.")
    if holding_lock and marker["state"] == BUILDING:
        marker = {**marker, "state": INTERRUPTED, "message": layout.INTERRUPTED_MESSAGE}
    return Status(
        label,
        marker["state"],
        done=marker["done"],
        total=marker["total"],
        message=marker["message"],
        job=marker["job"],
        updated=marker["updated"],
        display_name=marker["display_name"] or label,
    )
