"""Where things lie beside a database file: its snapshots folder and the snapshot file names.

dbselect refuses to open a snapshot for work, and snapshots stores them here: both read the
layout from this module, so neither imports the other's internals.

    <folder>/<name>.sqlite                       the database
    <folder>/snapshots/                          its snapshots (shared by the folder's files)
    <folder>/snapshots/<label>-YYYYmmdd-HHMMSS-<8 hex>.sqlite
"""

from __future__ import annotations

import re
from pathlib import Path

SNAPSHOTS_FOLDER = "snapshots"
SNAPSHOT_SUFFIX = ".sqlite"
# Longest label in a snapshot file name (the label names the database, see snapshots.naming).
MAX_LABEL = 40
SNAPSHOT_NAME_PATTERN = re.compile(
    r"^(?P<label>[A-Za-z0-9_-]{1,40})-(?P<stamp>\d{8}-\d{6})-(?P<id>[0-9a-f]{8})\.sqlite$"
)


def snapshot_dir_for(path: str | Path) -> Path:
    """Return the snapshots/ folder that belongs beside a database file."""
    return Path(path).parent / SNAPSHOTS_FOLDER


def is_snapshot_name(name: str, label: str | None = None) -> bool:
    """Return True if `name` is a well-formed snapshot file name (of `label`, if given)."""
    match = SNAPSHOT_NAME_PATTERN.match(name)
    return bool(match) and (label is None or match["label"] == label)


def is_snapshot_path(path: str | Path) -> bool:
    """Return True for a file named like a snapshot inside a snapshots/ folder."""
    path = Path(path)
    return path.parent.name == SNAPSHOTS_FOLDER and is_snapshot_name(path.name)
