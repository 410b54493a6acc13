"""Where things lie beside a database file: its snapshots folder and the snapshot file names.

dbselect refuses to open a snapshot for work, and snapshots stores them here: both read the
layout from this module, so neither imports the other's internals.

    <folder>/<name>.sqlite                       the database
    <folder>/snapshots/                          its snapshots (shared by the folder's files)
    databases/<label>/payloads/<aa>/<sha256>     its attachments' content (payloads app)
    <folder>/<name>.payloads/<aa>/<sha256>       ... of a file outside databases/<label>/
    <folder>/snapshots/<label>-YYYYmmdd-HHMMSS-<8 hex>.sqlite   (.pgdump: a PostgreSQL one)
    <folder>/.preparing.json                     a database being built (see below)
    <folder>/.preparing.lock                     flock()ed by its builder while at work
    databases/.archive/<label>-<time>/           an archived database folder (never served)

A database being built in the background (the provisioning app) has no file at its path yet,
only a small JSON marker in its folder that the builder rewrites as it goes and removes once
the file is in place:

    {"state": "queued|building|failed", "done": n, "total": m, "message": "…",
     "job": "<id>", "updated": <unix time>, "display_name": "…"}

dbselect reads it (`preparing`) to list the database as "being prepared" and to send
sessions to its progress page; it never writes it. A marker that says "building" while nobody
holds the lock belongs to a builder that died: `preparing` reports it as "interrupted".
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from dbselect.conf import get_config
from dbselect.files import locks

SNAPSHOTS_FOLDER = "snapshots"
SNAPSHOT_SUFFIX = ".sqlite"
# A PostgreSQL database's snapshots are pg_dump archives (custom format), named alike.
PG_SNAPSHOT_SUFFIX = ".pgdump"
# Longest label in a snapshot file name (the label names the database, see snapshots.naming).
MAX_LABEL = 40
SNAPSHOT_NAME_PATTERN = re.compile(
    r"^(?P<label>[A-Za-z0-9_-]{1,40})-(?P<stamp>\d{8}-\d{6})-(?P<id>[0-9a-f]{8})"
    r"(?P<suffix>\.sqlite|\.pgdump)$"
)


def _registered_label(target: str | Path) -> str | None:
    """Return the label of a PostgreSQL catalog target (`postgresql:<label>`), else None."""
    text = str(target)
    if text.startswith(REGISTERED_PREFIX) and not text.startswith(REGISTERED_PREFIX + "//"):
        return text[len(REGISTERED_PREFIX) :]
    return None


# A PostgreSQL database of the catalog (dbselect.catalog) has no file, but a folder all the
# same: databases/<label>/ holds its snapshots (pg_dump files) and its payloads.
REGISTERED_PREFIX = "postgresql:"


def folder_for(target: str | Path) -> Path:
    """Return the folder a database's snapshots and payloads live in."""
    label = _registered_label(target)
    if label is not None:
        return Path(get_config()["DATABASES_DIR"]) / label
    return Path(target).parent


def snapshot_dir_for(path: str | Path) -> Path:
    """Return the snapshots/ folder that belongs beside a database file (or to a PostgreSQL
    database of the catalog: databases/<label>/snapshots/)."""
    return folder_for(path) / SNAPSHOTS_FOLDER


PAYLOADS_FOLDER = "payloads"
PAYLOADS_SUFFIX = ".payloads"


def payload_dir_for(path: str | Path) -> Path:
    """Return the folder of content-addressed payloads that belongs to a database file.

    A database in the scanned layout (`databases/<label>/nukeworks.sqlite`) owns its whole
    folder, so its payloads lie in `payloads/` there; any other file shares its folder with
    others and gets `<file-stem>.payloads/` beside it. Snapshots of a database share its store:
    payloads are immutable, so a snapshot only records which ones its moment references.
    """
    if _registered_label(path) is not None:
        return folder_for(path) / PAYLOADS_FOLDER
    path = Path(path)
    config = get_config()
    root = os.path.realpath(config["DATABASES_DIR"])
    # Archived folders (databases/.archive/<label>-<time>/) keep the layout they had.
    in_databases = os.path.realpath(path.parent).startswith(root + os.sep)
    if path.name == config["DATABASE_FILENAME"] and in_databases:
        return path.parent / PAYLOADS_FOLDER
    return path.parent / f"{path.stem}{PAYLOADS_SUFFIX}"


def catalog_label(path: str | Path) -> str | None:
    """Return the label of `databases/<label>/<file>` for `path`, None for any other file
    (one outside the catalog, or in a hidden folder such as `.archive`); a PostgreSQL target
    `postgresql:<label>` gives its label."""
    registered = _registered_label(path)
    if registered is not None:
        return registered
    config = get_config()
    folder, name = os.path.split(os.path.normpath(path))
    root = os.path.realpath(config["DATABASES_DIR"])
    if name != config["DATABASE_FILENAME"] or os.path.realpath(os.path.dirname(folder)) != root:
        return None
    label = os.path.basename(folder)
    return None if label.startswith(".") else label


# databases/.archive/<label>-<YYYYmmdd-HHMMSS>/: whole database folders archived by operators
# (provisioning.archive). A dot folder, so never scanned; never selectable either.
ARCHIVE_FOLDER = ".archive"


def archive_dir() -> Path:
    """Return databases/.archive/, where archived database folders lie."""
    return Path(get_config()["DATABASES_DIR"]) / ARCHIVE_FOLDER


def is_archived_path(path: str | Path) -> bool:
    """Return True for a path inside databases/.archive/.

    `path` is compared as given: pass a real path (links resolved, as the selection does), so
    nothing here touches a possibly hanging network share.
    """
    archive = os.path.realpath(archive_dir())
    candidate = os.path.normpath(os.path.abspath(path))
    return candidate == archive or candidate.startswith(archive + os.sep)


def is_snapshot_name(name: str, label: str | None = None) -> bool:
    """Return True if `name` is a well-formed snapshot file name (of `label`, if given)."""
    match = SNAPSHOT_NAME_PATTERN.match(name)
    return bool(match) and (label is None or match["label"] == label)


def is_snapshot_path(path: str | Path) -> bool:
    """Return True for a file named like a snapshot inside a snapshots/ folder."""
    path = Path(path)
    return path.parent.name == SNAPSHOTS_FOLDER and is_snapshot_name(path.name)


# -- a database being prepared (written by the provisioning app, read here)
PREPARING_MARKER = ".preparing.json"
PREPARING_LOCK = ".preparing.lock"
PREPARING_STATES = ("queued", "building", "failed")
# Reported instead of "building" when no builder holds the lock any more.
INTERRUPTED = "interrupted"
INTERRUPTED_MESSAGE = (
    "Building stopped before the end (its worker was stopped or killed); nothing was served. "
    "An operator can rebuild or discard it."
)
# A marker is a few hundred bytes; anything larger is not one.
MAX_MARKER_BYTES = 64 * 1024
MAX_MARKER_MESSAGE = 2000


def preparing_marker_for(folder: str | Path) -> Path:
    """Return the path of the marker of a database being prepared in `folder`."""
    return Path(folder) / PREPARING_MARKER


def preparing(folder: str | Path, *, check_builder: bool = True) -> dict[str, Any] | None:
    """Return the marker of a database being prepared in `folder`, or None when it has none.

    With `check_builder`, "building" becomes "interrupted" when no builder holds the lock
    (the builder itself, holding it, reads the marker as written with check_builder=False).

    The folder may lie on a share others write to: only a regular file (never followed
    through a link) of at most MAX_MARKER_BYTES counts, and only the known keys are returned,
    with their types checked. A marker that cannot be read as one says state "failed".
    """
    path = preparing_marker_for(folder)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return _unreadable_marker("its progress file cannot be opened")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MARKER_BYTES:
            return _unreadable_marker("its progress file is not a regular small file")
        raw = os.read(fd, MAX_MARKER_BYTES + 1)
    except OSError:
        return _unreadable_marker("its progress file cannot be read")
    finally:
        os.close(fd)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _unreadable_marker("its progress file is not valid JSON")
    if not isinstance(data, dict):
        return _unreadable_marker("its progress file is not a JSON object")
    state = data.get("state")
    state = state if state in PREPARING_STATES else "failed"
    message = str(data.get("message") or "")[:MAX_MARKER_MESSAGE]
    if state == "building" and check_builder and not builder_at_work(folder):
        state, message = INTERRUPTED, INTERRUPTED_MESSAGE
    return {
        "state": state,
        "done": _count(data.get("done")),
        "total": _count(data.get("total")),
        "message": message,
        "job": str(data.get("job") or "")[:100],
        "updated": _number(data.get("updated")),
        "display_name": str(data.get("display_name") or "")[:200],
    }


def builder_at_work(folder: str | Path) -> bool:
    """Return True while a builder holds `folder`'s lock (any process of this machine)."""
    return locks.held_elsewhere(Path(folder) / PREPARING_LOCK)


def _unreadable_marker(why: str) -> dict[str, Any]:
    return {
        "state": "failed",
        "done": 0,
        "total": 0,
        "message": f"The database is not ready: {why}.",
        "job": "",
        "updated": None,
        "display_name": "",
    }


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
