"""Consistent copies of live SQLite files, both ways, always through SQLite itself.

`cp` of a WAL-mode file misses what is still in `-wal`, and copying over a live file corrupts
it; both directions therefore go through SQLite. A copy reads its source in one read
transaction, because an incremental backup restarts whenever another connection writes the
source and may never finish under a steady writer; in WAL mode writers carry on meanwhile.

A copy (a snapshot) is written by the page copier, snapshots.pagecopy: a child process that
reads the pages of that transaction from SQLite's `sqlite_dbpage` table and writes, hashes
and flushes them in one pass, so the copy is never read again. Where it cannot run (no
sqlean.py) and for small files, the online backup API writes the copy and it is hashed right
after, from the page cache. A restore writes into the live file with the backup API, in one
write transaction. Progress is reported by watching the destination grow.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import select
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dbselect.engines.live_files import GuardedConnection
from dbselect.files.paths import is_network_path, sqlite_uri
from snapshots import pagecopy

logger = logging.getLogger("nukeworks.snapshots")

Progress = Callable[[int, int], None]

# How often a step that found the other file locked is retried (seconds). SQLite's own busy
# handler sleeps ever longer (up to 100 ms) and so rarely catches the short gap between two
# transactions of a busy writer: a restore waited 5.8 s for a 16 KiB file under a steady
# writer with it, and a few milliseconds with a 1 ms poll.
RETRY_INTERVAL = 0.001
# Pages written per step of a restore, so that its progress can be reported (64 MiB at 4 KiB).
RESTORE_STEP_PAGES = 16384

# Reading through a memory map saves one read() per page (~15 % of a snapshot's time). SQLite
# advises against mmap on network file systems, so those read page by page.
MMAP_SIZE = 1 << 40

# Connections to a database file the server may be working on: their first lock and their
# close never interleave with another thread's (dbselect.engines.live_files).
_Guarded = GuardedConnection


class CopyFailed(Exception):
    """A copy or restore did not complete; the destination was left untouched or rolled back."""


@dataclass(frozen=True)
class CopyResult:
    """A finished copy: where it is, how big, and the SHA-256 of its bytes."""

    path: Path
    size: int
    sha256: str
    # Seconds spent copying (hashing and flushing included), then checking the copy and
    # renaming it into place (for logs and benchmarks).
    copy_seconds: float = 0.0
    verify_seconds: float = 0.0


def _readonly_uri(path: str | Path) -> str:
    return sqlite_uri(os.path.abspath(path), "ro")


def check_integrity(path: str | Path, *, quick: bool = True) -> str | None:
    """Return None when the file passes quick_check (or integrity_check), else the problem."""
    try:
        conn = sqlite3.connect(_readonly_uri(path), uri=True, timeout=30, factory=_Guarded)
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


def sha256_of(path: str | Path, chunk: int = 4 << 20) -> str:
    """Return the SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_of_descriptor(fd: int, chunk: int = 4 << 20) -> str:
    """Return the SHA-256 hex digest of the whole file open as `fd` (its offset is not used)."""
    digest = hashlib.sha256()
    offset = 0
    while block := os.pread(fd, chunk, offset):
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def page_size_of(path: str | Path) -> int | None:
    """Return the page size of a SQLite file, or None when SQLite cannot read it.

    Asked of SQLite, never read from the file with a descriptor of our own: the file may be
    the live database, and closing any descriptor of it would release SQLite's locks
    (dbselect.engines.live_files).
    """
    try:
        conn = sqlite3.connect(_readonly_uri(path), uri=True, timeout=5, factory=_Guarded)
    except sqlite3.Error:
        return None
    try:
        # The schema read makes SQLite check the header: a non-database fails here.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _LockTimeout(Exception):
    """The other database stayed locked longer than the caller was willing to wait."""


def _backup(
    src: sqlite3.Connection,
    dst: sqlite3.Connection,
    *,
    pages: int,
    lock_timeout: float,
    on_pages: Callable[[int, int], None] | None = None,
) -> None:
    """Run src.backup(dst), retrying a locked step every millisecond for up to `lock_timeout`.

    Both connections must have no busy timeout of their own (timeout=0). Without this deadline
    the sqlite3 module retries a locked step for ever.
    """
    started = time.monotonic()

    def step(status: int, remaining: int, total: int) -> None:
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            if time.monotonic() - started > lock_timeout:
                raise _LockTimeout
        elif on_pages is not None:
            on_pages(total - remaining, total)

    while True:
        try:
            src.backup(dst, pages=pages, progress=step, sleep=RETRY_INTERVAL)
            return
        except sqlite3.OperationalError as exc:
            # The module retries only the plain BUSY/LOCKED codes; an extended one such as
            # SQLITE_BUSY_RECOVERY (another connection recovering the WAL index) ends the
            # backup at once. A failed backup has rolled the destination back: start over.
            code = getattr(exc, "sqlite_errorcode", None)
            if not isinstance(code, int) or code & 0xFF not in (
                sqlite3.SQLITE_BUSY,
                sqlite3.SQLITE_LOCKED,
            ):
                raise
            if time.monotonic() - started > lock_timeout:
                raise _LockTimeout from None
            time.sleep(RETRY_INTERVAL)


class _WriteBehind:
    """Flush a growing file to disk a slice at a time while it is being written.

    One fsync of a whole 1 GiB copy at the end queues a gigabyte at the disk at once, and
    every other writer's commit (an fsync of its own) waits behind it: 300-570 ms measured.
    Flushing each FLUSH_SLICE as it appears keeps that queue short and overlaps the write-out
    with the copy.
    """

    def __init__(self, path: Path, slice_bytes: int) -> None:
        self.path, self.slice_bytes = path, slice_bytes
        self.fd: int | None = None
        self.flushed = 0

    def poll(self, size: int) -> None:
        if size - self.flushed < self.slice_bytes:
            return
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDONLY)
        os.fdatasync(self.fd)
        self.flushed = size

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


# Write-behind slice of a snapshot being written (see _WriteBehind).
FLUSH_SLICE = 32 << 20


def _run_with_progress(
    work: Callable[[], None],
    watch: Path,
    total: int,
    progress: Progress | None,
    *,
    write_behind: bool = False,
) -> None:
    """Run `work` in a thread; meanwhile report `watch`'s growth and flush it behind."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="sqlite-backup", daemon=True)
    thread.start()
    flusher = _WriteBehind(watch, FLUSH_SLICE) if write_behind else None
    last_report = 0.0
    try:
        while thread.is_alive():
            thread.join(0.05 if flusher else 0.2)
            try:
                size = watch.stat().st_size
                if flusher is not None:
                    flusher.poll(size)
            except OSError:
                continue  # not created yet, or already renamed: nothing to flush or show
            if progress is not None and time.monotonic() - last_report >= 0.2:
                last_report = time.monotonic()
                progress(min(size, total), total)
    finally:
        thread.join()
        if flusher is not None:
            flusher.close()
    if errors:
        raise errors[0]
    if progress is not None:
        progress(total, total)


def copy_database(
    source: str | Path,
    destination: str | Path,
    *,
    progress: Progress | None = None,
    busy_timeout: float = 30.0,
) -> CopyResult:
    """Copy the live database `source` to the new file `destination`, atomically.

    The copy is written under a temporary name beside `destination` as a self-contained
    rollback-journal file, its SHA-256 computed and the file flushed to disk while it is
    written (snapshots.pagecopy, in a child process) or, without that, right after SQLite's
    backup API wrote it. It is then checked (_check_copy: header, page size and count, schema
    readable) and renamed into place, and the folder is flushed. Raise CopyFailed (leaving
    nothing behind) on any error.

    The copy is not put through `quick_check`: it holds exactly the pages of one read
    transaction of the source, as SQLite's pager reads them, and its SHA-256 is that of the
    bytes written. Whether those pages form a sound database is checked where it matters,
    before a restore (snapshots.service.verify_restorable, restore_into); `dbcheck` checks
    a live database. Reading the whole copy once more for it cost 0.5 s per GiB.
    """
    source, destination = Path(source), Path(destination)
    if destination.exists():
        raise CopyFailed(f"{destination} already exists.")
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        total = source.stat().st_size
    except OSError as exc:
        raise CopyFailed(f"The database cannot be read: {exc.strerror}.") from exc
    try:
        started = time.perf_counter()
        written = None
        if total >= PAGE_COPY_MIN_BYTES and page_copier_available():
            written = _copy_pages(source, partial, total, progress, busy_timeout)
        if written is None:
            written = _backup_copy(source, partial, total, progress, busy_timeout)
        copied = time.perf_counter()
        _check_copy(partial, written)
        os.replace(partial, destination)
        _fsync(destination.parent)
    except _LockTimeout:
        raise CopyFailed(
            f"The database stayed locked by another connection for {busy_timeout:g} s; "
            "no copy was made."
        ) from None
    except (sqlite3.Error, OSError) as exc:
        raise CopyFailed(f"The copy failed: {exc}") from exc
    finally:
        for leftover in (partial, Path(f"{partial}-journal"), Path(f"{partial}-wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return CopyResult(
        destination,
        written.size,
        written.sha256,
        copy_seconds=copied - started,
        verify_seconds=time.perf_counter() - copied,
    )


@dataclass(frozen=True)
class _Written:
    """What a copy step wrote: pages, page size, bytes and their SHA-256."""

    pages: int
    page_size: int
    size: int
    sha256: str


# The page copier, run as a script by the interpreter running this code.
PAGE_COPIER = Path(pagecopy.__file__)
# Seconds between two progress reports of a copy.
PROGRESS_INTERVAL = 0.2
# Below this size a database is copied in this process: starting the child (about 40 ms)
# costs more than reading the copy again saves.
PAGE_COPY_MIN_BYTES = 32 << 20


@functools.cache
def page_copier_available() -> bool:
    """Return True when the page copier can run: POSIX, an interpreter and sqlean.py.

    Only looked up, never imported here: sqlean.py is a second copy of SQLite (see
    snapshots.pagecopy), which must not open a live database in this process.
    """
    return (
        os.name == "posix"
        and bool(sys.executable)
        and importlib.util.find_spec("sqlean") is not None
    )


def _copy_pages(
    source: Path, partial: Path, total: int, progress: Progress | None, busy_timeout: float
) -> _Written | None:
    """Copy `source` into `partial` with the page copier; None when it cannot run here.

    The child's standard input is a pipe this process keeps open until the child ends: if
    this process dies (a worker killed mid-snapshot), the child sees it close, removes its
    partial file and stops, instead of holding a read transaction of the live database open
    for nobody.
    """
    command = [
        sys.executable,
        "-P",  # never import the snapshots package's modules as top-level ones
        str(PAGE_COPIER),
        _readonly_uri(source),
        str(partial),
        repr(float(busy_timeout)),
        "0" if is_network_path(str(source)) else "1",
    ]
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, close_fds=True
        )
        assert child.stdout is not None and child.stdin is not None
        output = bytearray()
        last_report = time.monotonic()
        try:
            # Its report comes on stdout as it ends: waiting on the pipe wakes at once
            # (Popen.wait(timeout) polls, up to 50 ms late: 6 % of a 1 GiB snapshot).
            while True:
                ready, _, _ = select.select([child.stdout], [], [], PROGRESS_INTERVAL)
                if ready:
                    block = os.read(child.stdout.fileno(), 64 << 10)
                    if not block:
                        break
                    if len(output) < 64 << 10:
                        output += block
                if progress is not None and time.monotonic() - last_report >= PROGRESS_INTERVAL:
                    last_report = time.monotonic()
                    with contextlib.suppress(OSError):
                        progress(min(partial.stat().st_size, total), total)
            child.wait()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stdin.close()
        err.seek(0)
        errors = err.read(64 << 10).decode("utf-8", "replace").strip()
    lines = output.decode("utf-8", "replace").strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else {}
    except ValueError:
        report = {}
    if not isinstance(report, dict):
        report = {}
    if child.returncode == pagecopy.EXIT_UNAVAILABLE:
        logger.warning(
            "page copier unavailable, copying with the backup API: %s",
            report.get("error") or errors[-500:],
        )
        return None
    if child.returncode != 0 or "sha256" not in report:
        if report.get("locked"):
            raise _LockTimeout
        detail = report.get("error") or errors[-500:] or f"exit status {child.returncode}"
        raise CopyFailed(f"The copy failed: {detail}")
    if progress is not None:
        progress(total, total)
    return _Written(
        int(report["pages"]), int(report["page_size"]), int(report["size"]), report["sha256"]
    )


def _backup_copy(
    source: Path, partial: Path, total: int, progress: Progress | None, busy_timeout: float
) -> _Written:
    """Copy `source` into `partial` with the backup API, then hash and flush it."""
    pages: list[int] = []

    def work() -> None:
        src = sqlite3.connect(_readonly_uri(source), uri=True, timeout=0, factory=_Guarded)
        dst = sqlite3.connect(str(partial))
        try:
            if not is_network_path(str(source)):
                src.execute(f"PRAGMA mmap_size={MMAP_SIZE}")
                dst.execute(f"PRAGMA mmap_size={MMAP_SIZE}")
            # The partial file is thrown away on any failure and flushed once at the end, so
            # journaling and syncing it page by page would only slow the copy down (~30 %).
            dst.execute("PRAGMA journal_mode=OFF")
            dst.execute("PRAGMA synchronous=OFF")
            dst.execute("PRAGMA locking_mode=EXCLUSIVE")
            # One step: one read transaction on the source, so concurrent writes cannot make
            # the copy start over.
            _backup(src, dst, pages=-1, lock_timeout=busy_timeout)
            # The header was copied from a WAL source; make the snapshot a single file again.
            mode = dst.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            if str(mode).lower() != "delete":
                raise CopyFailed(f"The copy could not leave WAL mode (journal_mode={mode}).")
            pages.append(int(dst.execute("PRAGMA page_count").fetchone()[0]))
            pages.append(int(dst.execute("PRAGMA page_size").fetchone()[0]))
        finally:
            dst.close()
            src.close()

    _run_with_progress(work, partial, total, progress, write_behind=True)
    # Hash and flush at once: both read or write back the same pages, still in the page cache.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="snapshot-hash") as pool:
        digest = pool.submit(sha256_of, partial)
        flushed = pool.submit(_fsync, partial)
        sha256 = digest.result()
        flushed.result()
    return _Written(pages[0], pages[1], partial.stat().st_size, sha256)


def _check_copy(partial: Path, written: _Written) -> None:
    """Check that `partial` is the single-file database that was written; raise CopyFailed.

    Cheap (the header, SQLite's own page size and count, the schema), where `quick_check`
    read every page again: the bytes themselves are vouched for by the SHA-256 taken as they
    were written. The partial file is this copy's own, never a live database, so its header
    is read directly.
    """
    size = partial.stat().st_size
    if size != written.size or size != written.pages * written.page_size:
        raise CopyFailed(
            f"The copy is {size} bytes, not the {written.pages} pages of {written.page_size} "
            "bytes that were written."
        )
    with open(partial, "rb") as fh:
        header = fh.read(100)
    if not header.startswith(b"SQLite format 3\x00") or header[18:20] != b"\x01\x01":
        raise CopyFailed("The copy does not start with a rollback-journal SQLite header.")
    conn = sqlite3.connect(sqlite_uri(partial.resolve(), "ro", immutable=True), uri=True)
    try:
        conn.execute("PRAGMA trusted_schema=OFF")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        page_count = int(conn.execute("PRAGMA page_count").fetchone()[0])
    except sqlite3.Error as exc:
        raise CopyFailed(f"The copy cannot be read as a database: {exc}") from exc
    finally:
        conn.close()
    if (page_size, page_count) != (written.page_size, written.pages):
        raise CopyFailed(
            f"SQLite reads the copy as {page_count} pages of {page_size} bytes, not "
            f"{written.pages} of {written.page_size}."
        )


def backup_to(
    source: str | Path,
    destination: str | Path,
    *,
    progress: Progress | None = None,
    busy_timeout: float = 30.0,
) -> Path:
    """Copy the live database `source` to the new file `destination`; see copy_database()."""
    return copy_database(source, destination, progress=progress, busy_timeout=busy_timeout).path


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
    snapshot_pages, live_pages = page_size_of(snapshot), page_size_of(live)
    if live_pages is not None and snapshot_pages != live_pages:
        # SQLite refuses this backup into a WAL database with "attempt to write a readonly
        # database", which would tell the user nothing.
        raise CopyFailed(
            f"The snapshot uses {snapshot_pages}-byte pages and the database {live_pages}-byte "
            "pages; it cannot be restored in place."
        )
    src = dst = None
    try:
        src = sqlite3.connect(_readonly_uri(snapshot), uri=True, timeout=0)
        dst = sqlite3.connect(str(live), timeout=0, factory=_Guarded)
        # Several steps (so progress can be reported) are safe here: nobody writes the
        # snapshot, so the copy never restarts, and the destination stays locked in one write
        # transaction from the first step to the last.
        _backup(
            src,
            dst,
            pages=RESTORE_STEP_PAGES,
            lock_timeout=busy_timeout,
            on_pages=(lambda done, total: progress(done, total)) if progress else None,
        )
    except _LockTimeout:
        raise CopyFailed(
            f"The database stayed locked by other connections for {busy_timeout:g} s; "
            "nothing was restored."
        ) from None
    except (sqlite3.Error, OSError) as exc:
        raise CopyFailed(f"The restore failed: {exc}") from exc
    finally:
        for conn in (dst, src):
            if conn is not None:
                conn.close()
    problem = check_integrity(live)
    if problem:
        raise CopyFailed(f"The restored database failed its integrity check: {problem}")
