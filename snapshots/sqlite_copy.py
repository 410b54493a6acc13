"""Consistent copies of live SQLite files, both ways, through SQLite's online backup API.

`cp` of a WAL-mode file misses what is still in `-wal`, and copying over a live file corrupts
it; both directions therefore go through the backup API. The copy runs in one step (one read
transaction on the source), because an incremental backup restarts whenever another
connection writes the source and may never finish under a steady writer; in WAL mode writers
carry on meanwhile. Progress is reported by watching the destination grow.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

Progress = Callable[[int, int], None]


class CopyFailed(Exception):
    """A copy or restore did not complete; the destination was left untouched or rolled back."""


def _readonly_uri(path: str | Path) -> str:
    from urllib.parse import quote

    return f"file:{quote(str(path), safe='/')}?mode=ro"


def check_integrity(path: str | Path, *, quick: bool = True) -> str | None:
    """Return None when the file passes quick_check (or integrity_check), else the problem."""
    try:
        conn = sqlite3.connect(_readonly_uri(path), uri=True, timeout=30)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        pragma = "quick_check" if quick else "integrity_check"
        rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}").fetchall()]
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
    return None if rows == ["ok"] else "; ".join(str(r) for r in rows[:5])


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _run_with_progress(
    work: Callable[[], None], watch: Path, total: int, progress: Progress | None
) -> None:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="sqlite-backup", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
        if progress is not None:
            with contextlib.suppress(OSError):
                progress(min(watch.stat().st_size, total), total)
    if errors:
        raise errors[0]
    if progress is not None:
        progress(total, total)


def backup_to(
    source: str | Path,
    destination: str | Path,
    *,
    progress: Progress | None = None,
    busy_timeout: float = 30.0,
) -> Path:
    """Copy the live database `source` to the new file `destination`, atomically.

    The copy is written under a temporary name beside `destination`, checked with
    `quick_check`, switched to the rollback journal (a self-contained single file), flushed to
    disk and renamed into place. Raise CopyFailed (leaving nothing behind) on any error.
    """
    source, destination = Path(source), Path(destination)
    if destination.exists():
        raise CopyFailed(f"{destination} already exists.")
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.partial")
    total = source.stat().st_size

    def work() -> None:
        src = sqlite3.connect(_readonly_uri(source), uri=True, timeout=busy_timeout)
        dst = sqlite3.connect(str(partial))
        try:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
            src.close()

    try:
        _run_with_progress(work, partial, total, progress)
        problem = check_integrity(partial)
        if problem:
            raise CopyFailed(f"The copy failed its integrity check: {problem}")
        _fsync(partial)
        os.replace(partial, destination)
        _fsync(destination.parent)
    except (sqlite3.Error, OSError) as exc:
        raise CopyFailed(f"The copy failed: {exc}") from exc
    finally:
        for leftover in (partial, Path(f"{partial}-journal"), Path(f"{partial}-wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return destination


def restore_into(
    snapshot: str | Path,
    live: str | Path,
    *,
    progress: Progress | None = None,
    busy_timeout: float = 30.0,
) -> None:
    """Write the content of `snapshot` into the live database file `live`, in place.

    The backup API writes the pages inside one write transaction of `live`, so other
    connections (in WAL mode, other processes too) see either the old or the new content,
    never a mixture, and the file is never deleted or replaced under them. The snapshot must
    pass `quick_check` first; a bad snapshot leaves `live` untouched.
    """
    snapshot, live = Path(snapshot), Path(live)
    problem = check_integrity(snapshot)
    if problem:
        raise CopyFailed(f"The snapshot is damaged and was not restored: {problem}")
    total = snapshot.stat().st_size

    def work() -> None:
        src = sqlite3.connect(_readonly_uri(snapshot), uri=True, timeout=busy_timeout)
        dst = sqlite3.connect(str(live), timeout=busy_timeout)
        try:
            src.backup(dst, pages=-1)
        finally:
            dst.close()
            src.close()

    try:
        _run_with_progress(work, live, total, progress)
    except sqlite3.Error as exc:
        raise CopyFailed(f"The restore failed: {exc}") from exc
    problem = check_integrity(live)
    if problem:
        raise CopyFailed(f"The restored database failed its integrity check: {problem}")
