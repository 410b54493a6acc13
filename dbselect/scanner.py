"""The defaults list: every databases/<label>/nukeworks.sqlite of the project."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dbselect.conf import get_config
from dbselect.files.schema import SchemaState
from dbselect.files.validation import ValidationFailed, inspect_database


@dataclass(frozen=True)
class ScannedDatabase:
    """One database found by the scanner."""

    label: str
    path: str
    display_name: str
    state: SchemaState | None
    error: str | None
    is_empty: bool = False

    @property
    def usable(self) -> bool:
        return self.state is SchemaState.UP_TO_DATE


def database_files(root: Path | None = None) -> list[tuple[str, str]]:
    """Return (label, absolute path) for each databases/<label>/nukeworks.sqlite, by label."""
    config = get_config()
    root = Path(root or config["DATABASES_DIR"])
    filename = config["DATABASE_FILENAME"]
    found = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        candidate = os.path.join(entry.path, filename)
        if os.path.isfile(candidate):
            found.append((entry.name, os.path.normpath(os.path.abspath(candidate))))
    return found


def scan(root: Path | None = None) -> list[ScannedDatabase]:
    """Validate each project database read-only and return it with its friendly name."""
    results = []
    for label, path in database_files(root):
        try:
            info = inspect_database(path)
        except ValidationFailed as exc:
            results.append(ScannedDatabase(label, path, label, None, exc.reason))
            continue
        results.append(
            ScannedDatabase(
                label=label,
                path=path,
                display_name=info.display_name or label,
                state=info.state,
                error=None,
                is_empty=info.is_empty,
            )
        )
    return results
