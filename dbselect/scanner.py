"""The defaults list: every databases/<label>/nukeworks.sqlite of the project, and every
PostgreSQL database an operator registered in the catalog (dbselect.catalog)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dbselect import catalog
from dbselect.catalog import postgres
from dbselect.conf import get_config
from dbselect.files.schema import SchemaState
from dbselect.files.validation import ValidationFailed, inspect_database, not_ready_reason
from dbselect.layout import preparing


@dataclass(frozen=True)
class ScannedDatabase:
    """One database found by the scanner."""

    label: str
    path: str
    display_name: str
    state: SchemaState | None
    error: str | None
    is_empty: bool = False
    # A database being built in the background (no file yet): its marker (dbselect.layout).
    preparing: dict | None = None
    # A file whose building never finished (seed_status not "ready"): never served.
    not_ready: bool = False
    # Where its progress is followed (filled by the selector view, DBSELECT["PREPARING_URL"]).
    progress_url: str = ""
    # "sqlite", or "postgresql" for a catalog entry (`path` is then its target).
    kind: str = "sqlite"
    # Where it lives, as people may see it: host:port/dbname of a PostgreSQL database.
    location: str = ""

    @property
    def usable(self) -> bool:
        return self.state is SchemaState.UP_TO_DATE and self.error is None


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


def labelled_path(label: str, root: Path | None = None) -> str:
    """Return the absolute path of the database labelled `label` in the catalog.

    Raise LookupError, with a message naming the known labels, when there is none.
    """
    files = dict(database_files(root))
    if label not in files:
        known = ", ".join(sorted(files)) or "none"
        raise LookupError(f"No database labelled {label!r} (known labels: {known}).")
    return files[label]


def preparing_databases(root: Path | None = None) -> list[tuple[str, str, dict]]:
    """Return (label, future path, marker) for each label folder being prepared, by label.

    A database is being prepared while its folder holds the marker (dbselect.layout) and no
    database file yet.
    """
    config = get_config()
    root = Path(root or config["DATABASES_DIR"])
    filename = config["DATABASE_FILENAME"]
    found = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        candidate = os.path.join(entry.path, filename)
        if os.path.lexists(candidate):
            continue
        marker = preparing(entry.path)
        if marker is not None:
            found.append((entry.name, os.path.normpath(os.path.abspath(candidate)), marker))
    return found


def preparing_at(path: object) -> tuple[str, dict] | None:
    """Return (label, marker) when `path` names databases/<label>/<file> being prepared."""
    if not isinstance(path, str) or not path or "\x00" in path:
        return None
    config = get_config()
    root = os.path.normpath(os.path.abspath(config["DATABASES_DIR"]))
    candidate = os.path.normpath(path)
    folder, name = os.path.split(candidate)
    if name != config["DATABASE_FILENAME"] or os.path.dirname(folder) != root:
        return None
    label = os.path.basename(folder)
    if label.startswith(".") or os.path.lexists(candidate):
        return None
    marker = preparing(folder)
    return (label, marker) if marker is not None else None


def scan(root: Path | None = None) -> list[ScannedDatabase]:
    """Validate each project database read-only and return it with its friendly name.

    Databases being prepared are listed too (state None, `preparing` set), in label order.
    """
    results = []
    for label, path in database_files(root):
        try:
            info = inspect_database(path)
        except ValidationFailed as exc:
            results.append(ScannedDatabase(label, path, label, None, exc.reason))
            continue
        # A file whose building never finished is never served (seed_status).
        not_ready = not_ready_reason(info)
        results.append(
            ScannedDatabase(
                label=label,
                path=path,
                display_name=info.display_name or label,
                state=info.state,
                error=not_ready,
                is_empty=info.is_empty,
                not_ready=not_ready is not None,
            )
        )
    for label, path, marker in preparing_databases(root):
        name = marker.get("display_name") or label
        results.append(ScannedDatabase(label, path, name, None, None, preparing=marker))
    if root is None:
        results.extend(scan_catalog())
    return sorted(results, key=lambda db: db.label)


def scan_catalog() -> list[ScannedDatabase]:
    """Validate each registered PostgreSQL database read-only, all at once (one slow or
    unreachable server costs its connect timeout once, not once per entry)."""
    try:
        entries = catalog.entries()
    except Exception as exc:  # the catalog's Redis is down: the files are still listed
        return [
            ScannedDatabase(
                "catalog", "", "PostgreSQL catalog", None,
                f"The catalog of PostgreSQL databases cannot be read ({type(exc).__name__}).",
                kind=catalog.KIND,
            )
        ]  # fmt: skip
    if not entries:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(entries))) as pool:
        return list(pool.map(_scan_entry, entries))


def _scan_entry(entry: catalog.CatalogEntry) -> ScannedDatabase:
    where = entry.url.server()
    try:
        info = postgres.inspect(entry.target, entry.url)
    except ValidationFailed as exc:
        return ScannedDatabase(
            entry.label, entry.target, entry.display_name or entry.label, None, exc.reason,
            kind=catalog.KIND, location=where,
        )  # fmt: skip
    not_ready = not_ready_reason(info)
    return ScannedDatabase(
        label=entry.label,
        path=entry.target,
        display_name=info.display_name or entry.display_name or entry.label,
        state=info.state,
        error=not_ready,
        is_empty=info.is_empty,
        not_ready=not_ready is not None,
        kind=catalog.KIND,
        location=where,
    )
