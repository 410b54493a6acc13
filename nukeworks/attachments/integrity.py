"""Whether a database's payload store matches what references it, and the collector.

A payload is *referenced* by a row of the live database or by any of its snapshots (the
hashes recorded in each snapshot's sidecar, and the rows of the snapshot file itself, so a
snapshot taken before its sidecar recorded payloads still counts). The report lists:

- missing: referenced, but no file in the store (shown as "file missing"; downloads answer 404);
- corrupt: a file whose content no longer hashes to its name;
- extra: a file nothing references (what `payloads gc` removes).

The collector holds the snapshots folder's lock (no snapshot is half-written while it decides)
and the store's own lock (no upload is between writing its file and committing its row).

A PostgreSQL database of the catalog (`postgresql:<label>`) has its store and snapshots in
databases/<label>/ as a file has: its rows are read through its connection alias, and its
snapshots (pg_dump archives, which only PostgreSQL reads) count by the hashes their sidecars
recorded.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dbselect import catalog, engines
from payloads import references
from payloads.store import INCOMING_PREFIX, PayloadStore
from snapshots import service as snapshots
from snapshots.locks import folder_lock

# Seconds an upload's temporary file may sit before the collector calls it abandoned.
ABANDONED_UPLOAD_AGE = 3600.0

__all__ = ["Collected", "IntegrityReport", "check", "collect", "referenced"]


@dataclass
class IntegrityReport:
    """The payload store of one database against its rows and snapshots."""

    database: str
    store: Path
    referenced_by_rows: int = 0
    referenced_by_snapshots: int = 0
    files: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    unreadable_snapshots: list[str] = field(default_factory=list)
    hashes_verified: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing referenced is missing or corrupt."""
        return not (self.missing or self.corrupt or self.unreadable_snapshots)


@dataclass
class Collected:
    """What the collector removed (or, in a dry run, would remove)."""

    removed: list[str] = field(default_factory=list)
    bytes: int = 0
    strays: list[str] = field(default_factory=list)
    kept: int = 0
    dry_run: bool = True


def _rows(database: str) -> set[str]:
    return references.referenced_by_alias(engines.register(database).alias)


def _snapshot_refs(database: str, unreadable: list[str]) -> set[str]:
    found: set[str] = set()
    for snapshot in snapshots.list_snapshots(database):
        found |= set(snapshot.payloads)
        if not str(snapshot.path).endswith(".sqlite"):
            # A pg_dump archive: its sidecar recorded its moment's payloads when it was taken.
            continue
        try:
            found |= references.referenced_in_file(snapshot.path)
        except sqlite3.Error:
            # Its sidecar's list still protects what it recorded; say it could not be read.
            unreadable.append(snapshot.name)
    return found


def referenced(
    database: str, *, rows_from_file: bool = False
) -> tuple[set[str], set[str], list[str]]:
    """Return (hashes the rows reference, hashes the snapshots reference, unreadable ones).

    With `rows_from_file` the rows are read from the file itself, read-only
    (payloads.references), instead of through a Django connection: `manage.py dbcheck` uses
    it, so a check never opens a file for writing (nor turns its journal mode to WAL).
    """
    unreadable: list[str] = []
    from_file = rows_from_file and not catalog.is_target(database)
    rows = references.referenced_in_file(database) if from_file else _rows(database)
    return rows, _snapshot_refs(database, unreadable), unreadable


def check(
    database: str,
    *,
    verify_hashes: bool = True,
    progress: Callable[[int, int], None] | None = None,
    rows_from_file: bool = False,
) -> IntegrityReport:
    """Compare the store of `database` with what references it; with `verify_hashes`, read
    every file and compare its SHA-256 with its name. `rows_from_file`: see `referenced`."""
    store = PayloadStore.for_database(database)
    rows, in_snapshots, unreadable = referenced(database, rows_from_file=rows_from_file)
    wanted = rows | in_snapshots
    report = IntegrityReport(
        database=database,
        store=store.root,
        referenced_by_rows=len(rows),
        referenced_by_snapshots=len(in_snapshots),
        unreadable_snapshots=unreadable,
        hashes_verified=verify_hashes,
    )
    present = dict(store.hashes())
    report.files = len(present)
    report.bytes = sum(st.st_size for st in present.values())
    report.missing = sorted(wanted - present.keys())
    report.extra = sorted(present.keys() - wanted)
    report.strays = [str(p.relative_to(store.root)) for p in store.strays()]
    if verify_hashes:
        for done, sha256 in enumerate(sorted(present), 1):
            if store.hash_of_file(sha256) != sha256:
                report.corrupt.append(sha256)
            if progress is not None:
                progress(done, len(present))
    return report


def collect(database: str, *, dry_run: bool = True, now: float | None = None) -> Collected:
    """Remove the payload files no row and no snapshot references (only list them with
    `dry_run`), and uploads abandoned for over an hour. Never touches a referenced file."""
    store = PayloadStore.for_database(database)
    result = Collected(dry_run=dry_run)
    now = time.time() if now is None else now
    with (
        folder_lock(snapshots.folder_for(database), exclusive=True),
        store.collecting(),
    ):
        rows, in_snapshots, unreadable = referenced(database)
        if unreadable:
            # A snapshot that cannot be read may reference anything: remove nothing.
            raise snapshots.SnapshotError(
                "Some snapshots cannot be read ("
                + ", ".join(unreadable)
                + "); nothing was collected. Check them with `manage.py dbcheck`."
            )
        wanted = rows | in_snapshots
        for sha256, st in store.hashes():
            if sha256 in wanted:
                result.kept += 1
                continue
            result.removed.append(sha256)
            result.bytes += st.st_size
            if not dry_run:
                store.remove(sha256)
        for stray in store.strays():
            abandoned = (
                stray.name.startswith(INCOMING_PREFIX)
                and stray.is_file()
                and now - stray.stat().st_mtime > ABANDONED_UPLOAD_AGE
            )
            if abandoned:
                result.strays.append(stray.name)
                if not dry_run:
                    stray.unlink(missing_ok=True)
    return result
