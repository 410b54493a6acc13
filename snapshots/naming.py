"""Snapshot file names: `<label>-YYYYmmdd-HHMMSS-<short-id>.sqlite`, safe and sortable.

The label comes from the database's own path (never from text a user typed), the time is UTC
(local time would sort wrongly across a daylight-saving change) and the short id keeps two
snapshots taken in the same second apart. A name coming back from a URL or a command line is
accepted only if it matches this pattern exactly, so it can never leave the snapshots folder.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

from dbselect.conf import get_config
from dbselect.layout import MAX_LABEL, is_snapshot_name
from dbselect.layout import SNAPSHOT_NAME_PATTERN as NAME_PATTERN
from dbselect.layout import SNAPSHOT_SUFFIX as SUFFIX

__all__ = [
    "MAX_LABEL",
    "NAME_PATTERN",
    "SUFFIX",
    "is_snapshot_name",
    "label_for",
    "new_name",
    "time_of",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def label_for(database: str | Path) -> str:
    """Return the file-name label of a database: its folder for `<label>/nukeworks.sqlite`.

    Any other file is labelled by its own name without extension, so two databases that share
    a folder (and so a snapshots/ folder) keep their snapshots apart.
    """
    path = Path(database)
    raw = path.parent.name if path.name == get_config()["DATABASE_FILENAME"] else path.stem
    label = _UNSAFE.sub("-", raw).strip("-")[:MAX_LABEL].strip("-")
    return label or "database"


def new_name(label: str, when: datetime | None = None) -> str:
    """Return a fresh snapshot file name for `label` taken at `when` (now by default)."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return f"{label}-{when:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}{SUFFIX}"


def time_of(name: str) -> datetime | None:
    """Return the UTC time written in a snapshot file name."""
    match = NAME_PATTERN.match(name)
    if not match:
        return None
    return datetime.strptime(match["stamp"], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
