"""Snapshot file names: `<label>-YYYYmmdd-HHMMSS-<short-id>.sqlite`, safe and sortable.

A PostgreSQL database of the catalog (target `postgresql:<label>`) has `.pgdump` snapshots
(pg_dump archives) named the same way after its catalog label; a database only ever lists and
restores snapshots of its own kind.

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

from dbselect import catalog
from dbselect.conf import get_config
from dbselect.layout import MAX_LABEL, PG_SNAPSHOT_SUFFIX, is_snapshot_name
from dbselect.layout import SNAPSHOT_NAME_PATTERN as NAME_PATTERN
from dbselect.layout import SNAPSHOT_SUFFIX as SUFFIX

__all__ = [
    "MAX_LABEL",
    "NAME_PATTERN",
    "PG_SUFFIX",
    "SUFFIX",
    "is_snapshot_name",
    "is_snapshot_of",
    "label_for",
    "new_name",
    "suffix_for",
    "time_of",
]

PG_SUFFIX = PG_SNAPSHOT_SUFFIX

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def label_for(database: str | Path) -> str:
    """Return the file-name label of a database: its folder for `<label>/nukeworks.sqlite`.

    Any other file is labelled by its own name without extension, so two databases that share
    a folder (and so a snapshots/ folder) keep their snapshots apart. A PostgreSQL database of
    the catalog is labelled by its catalog label.
    """
    raw = catalog.label_of(str(database))
    if raw is None:
        path = Path(database)
        raw = path.parent.name if path.name == get_config()["DATABASE_FILENAME"] else path.stem
    label = _UNSAFE.sub("-", raw).strip("-")[:MAX_LABEL].strip("-")
    return label or "database"


def suffix_for(database: str | Path) -> str:
    """Return the file suffix of `database`'s snapshots: `.pgdump` for a PostgreSQL one."""
    return PG_SUFFIX if catalog.is_target(str(database)) else SUFFIX


def is_snapshot_of(name: str, database: str | Path) -> bool:
    """Return True if `name` is a snapshot file name of `database` (its label and kind)."""
    return is_snapshot_name(name, label_for(database)) and name.endswith(suffix_for(database))


def new_name(label: str, when: datetime | None = None, suffix: str = SUFFIX) -> str:
    """Return a fresh snapshot file name for `label` taken at `when` (now by default)."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return f"{label}-{when:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}{suffix}"


def time_of(name: str) -> datetime | None:
    """Return the UTC time written in a snapshot file name."""
    match = NAME_PATTERN.match(name)
    if not match:
        return None
    return datetime.strptime(match["stamp"], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
