"""Child process: copy a live SQLite database page by page, hashing and flushing as it writes.

Run by snapshots.sqlite_copy as `python -P pagecopy.py SOURCE_URI TARGET LOCK_TIMEOUT LOCAL`
(never imported by the server for anything but its constants). It opens the source through
SQLite, in one read transaction, and reads every page of that moment from SQLite's
`sqlite_dbpage` table: the pages as SQLite's own pager sees them, those still in `-wal`
included, so the copy is as consistent as a one-step backup, and writers carry on meanwhile in
WAL mode. It writes them in order into TARGET, a new file of its own, while a second thread
hashes exactly the bytes written, so the copy is never read again. The backup API wrote the
copy through SQLite, and the copy then had to be read again for its SHA-256 and quick_check
(1.2 s of a 1 GiB snapshot's 3 s).

On a local file system the copy is written with O_DIRECT: the bytes go from the copier's
buffers to the disk without being copied into the page cache (measured: 0.15 s of CPU per GiB
instead of 1-2 s here), the snapshot does not push the live database's pages out of the cache,
and the disk never holds more than a few MiB of it queued, so other writers' commits do not
wait behind a gigabyte of write-back. Where O_DIRECT is refused (tmpfs, a network share, the
short last write of a file of small pages), it writes through the page cache and flushes
behind itself, FLUSH_SLICE at a time. Either way the file is fsynced before it is reported.

Why a child process: Python's sqlite3 module is built without SQLITE_ENABLE_DBPAGE_VTAB, and
the SQLite library that has it (sqlean.py's) is a second copy of SQLite. In the server's process
it would keep its own table of POSIX locks, and closing its descriptor of the live file would
release every lock the server's own connections hold on it (DESIGN, "Durability first"). A
separate process has locks of its own, like any other worker.

The only bytes changed are in page 1's header: the file format pair (offsets 18 and 19), 2/2
in a WAL database, set to 1/1 as `PRAGMA journal_mode=DELETE` sets them, so the snapshot is a
self-contained rollback-journal file that opening never gives a `-wal`; and the database size
in pages (offset 28), set to the number of pages copied, as the backup API sets it.

It prints one line of JSON: {"pages", "page_size", "size", "sha256"} on success (exit 0), or
{"error", "locked"} (exit 1, or EXIT_UNAVAILABLE without sqlean.py). The caller removes
TARGET on failure. Standard input is the parent's pipe: when it closes before the copy is
done, the parent has gone, and the copier removes TARGET and exits (EXIT_ORPHANED).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import mmap
import os
import queue
import sys
import threading
import time

# Bytes of pages read per fetch, hashed per update and written per write().
CHUNK_BYTES = 4 << 20
# Buffers of CHUNK_BYTES being filled, hashed or written: the copier's memory.
BUFFERS = 4
# Bytes written between two flushes when writing through the page cache.
FLUSH_SLICE = 32 << 20
# Retry interval while the source is locked (see snapshots.sqlite_copy.RETRY_INTERVAL).
RETRY_INTERVAL = 0.001
MMAP_SIZE = 1 << 40
# Exit status when sqlean.py cannot be loaded: the caller copies with the backup API instead.
EXIT_UNAVAILABLE = 3
# Exit status when the parent went away (its end of standard input closed) before the end.
EXIT_ORPHANED = 4


class Locked(Exception):
    """The source stayed locked by other connections past the deadline."""


class Unavailable(Exception):
    """The SQLite with `sqlite_dbpage` (sqlean.py) cannot be loaded."""


def _is_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)
    return "locked" in str(exc) or "busy" in str(exc)


def _begin(conn, lock_timeout: float, errors: tuple[type[BaseException], ...]) -> None:
    """Open the read transaction that pins the copy's moment, retrying a locked source.

    SQLite's own busy handler sleeps ever longer (up to 100 ms) and rarely catches the short
    gap between two transactions of a busy writer; this polls every millisecond.
    """
    started = time.monotonic()
    while True:
        try:
            conn.execute("BEGIN")
            # The first read takes the read lock (WAL: a read mark) and checks the header; a
            # file that is not a database fails here.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return
        except errors as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not _is_busy(exc):
                raise
            if time.monotonic() - started > lock_timeout:
                raise Locked from None
            time.sleep(RETRY_INTERVAL)


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for `fd`; return whether it is on."""
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:
        return False
    import fcntl  # POSIX only, as O_DIRECT

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | direct) if on else (flags & ~direct))
    except OSError:
        return False  # tmpfs and some other file systems have no direct I/O
    return on


class _Pipeline:
    """Hash, then write, each filled buffer in order, in two threads; hand buffers back.

    The main thread fills a buffer with pages (buffer()), then submit()s it; the hasher thread
    adds it to the SHA-256 (hashlib releases the GIL), the writer thread writes it at the next
    offset, and the buffer goes back to the free ones. A buffer is in one stage at a time, so
    the bytes hashed are the bytes written. The buffers are anonymous memory maps: page
    aligned, as O_DIRECT needs.
    """

    def __init__(self, fd: int, chunk_bytes: int, *, direct: bool) -> None:
        self.fd, self.direct = fd, direct
        self.digest = hashlib.sha256()
        self.error: BaseException | None = None
        self.written = self.flushed = 0
        self.free: queue.Queue[mmap.mmap] = queue.Queue()
        for _ in range(BUFFERS):
            self.free.put(mmap.mmap(-1, chunk_bytes))
        self.to_hash: queue.Queue[tuple[mmap.mmap, int] | None] = queue.Queue()
        self.to_write: queue.Queue[tuple[mmap.mmap, int] | None] = queue.Queue()
        self.threads = [
            threading.Thread(target=self._hash, name="pagecopy-sha256", daemon=True),
            threading.Thread(target=self._write, name="pagecopy-write", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def buffer(self) -> mmap.mmap:
        """Return a free buffer to fill; raise what went wrong in a thread, if anything."""
        buf = self.free.get()
        if self.error is not None:
            raise self.error
        return buf

    def submit(self, buf: mmap.mmap, length: int) -> None:
        self.to_hash.put((buf, length))

    def finish(self) -> str:
        """Wait for every buffer to be written; return the SHA-256 of all of them."""
        self.to_hash.put(None)
        for thread in self.threads:
            thread.join()
        if self.error is not None:
            raise self.error
        return self.digest.hexdigest()

    def _hash(self) -> None:
        while (item := self.to_hash.get()) is not None:
            if self.error is None:
                buf, length = item
                with memoryview(buf) as view:
                    self.digest.update(view[:length])
            self.to_write.put(item)
        self.to_write.put(None)

    def _write(self) -> None:
        while (item := self.to_write.get()) is not None:
            buf, length = item
            try:
                if self.error is None:
                    with memoryview(buf) as view:
                        self._write_all(view[:length])
            except BaseException as exc:  # raised again by buffer() or finish()
                self.error = exc
            finally:
                self.free.put(buf)

    def _write_all(self, data: memoryview) -> None:
        while data:
            try:
                done = os.pwrite(self.fd, data, self.written)
            except OSError as exc:
                # O_DIRECT refuses a write whose length or offset the device cannot take
                # directly (the short last buffer of a file of small pages): go on buffered.
                if not self.direct or exc.errno != errno.EINVAL:
                    raise
                self.direct = _set_direct(self.fd, False)
                continue
            self.written += done
            data = data[done:]
        if not self.direct and self.written - self.flushed >= FLUSH_SLICE:
            # Through the page cache, flush behind: one fsync of a whole gigabyte at the end
            # makes every other writer's commit wait behind it (300-570 ms measured).
            os.fdatasync(self.fd)
            self.flushed = self.written


def copy_pages(
    source_uri: str, target: str, *, lock_timeout: float, use_mmap: bool, direct: bool
) -> dict:
    """Copy the database at `source_uri` into the new file `target`; return what was written."""
    try:
        import sqlean as sqlite
    except ImportError as exc:
        raise Unavailable(str(exc)) from exc

    conn = sqlite.connect(
        source_uri, uri=True, timeout=0, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA trusted_schema=OFF")
        if use_mmap:
            conn.execute(f"PRAGMA mmap_size={MMAP_SIZE}")
        _begin(conn, lock_timeout, (sqlite.OperationalError,))
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        page_count = int(conn.execute("PRAGMA page_count").fetchone()[0])
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
        try:
            per_chunk = max(1, CHUNK_BYTES // page_size)
            pipeline = _Pipeline(fd, per_chunk * page_size, direct=direct and _set_direct(fd, True))
            pages = 0
            try:
                # In page order (the table gives its rows so, or SQLite would sort them), one
                # row per page from 1 to page_count (counted below). Only `data` is selected:
                # a second column costs a quarter of this thread's time.
                cursor = conn.execute("SELECT data FROM sqlite_dbpage ORDER BY pgno")
                while rows := cursor.fetchmany(per_chunk):
                    buf = pipeline.buffer()
                    offset = 0
                    for (data,) in rows:
                        if len(data) != page_size:
                            raise RuntimeError(f"a page is {len(data)} bytes, not {page_size}")
                        buf[offset : offset + page_size] = data
                        offset += page_size
                    if pages == 0:
                        # Page 1's header as the backup API writes it: a rollback-journal file
                        # (as journal_mode=DELETE sets it) of page_count pages.
                        buf[18:20] = b"\x01\x01"
                        buf[28:32] = page_count.to_bytes(4, "big")
                    pipeline.submit(buf, offset)
                    pages += len(rows)
            finally:
                sha256 = pipeline.finish()
            # The moment is copied: let checkpoints pass before the last flush.
            conn.execute("COMMIT")
            if pages != page_count:
                raise RuntimeError(f"{pages} pages copied of {page_count}")
            os.fsync(fd)
            written = pipeline.written
        finally:
            os.close(fd)
    finally:
        conn.close()
    return {"pages": pages, "page_size": page_size, "size": written, "sha256": sha256}


def _stop_with_parent(target: str) -> None:
    """Remove `target` and exit when standard input closes: the parent has gone."""

    def watch() -> None:
        # os.read, not sys.stdin: a daemon thread blocked in a buffered reader's lock makes
        # the interpreter's shutdown abort ("could not acquire lock for <stdin>").
        with contextlib.suppress(OSError):
            while os.read(0, 1 << 10):
                pass
        with contextlib.suppress(OSError):
            os.unlink(target)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="pagecopy-parent", daemon=True).start()


def main(argv: list[str]) -> int:
    source_uri, target, lock_timeout = argv[1], argv[2], float(argv[3])
    # A local file: SQLite may map it, and the copy (beside it) may be written directly.
    local = argv[4] == "1"
    if not sys.stdin.isatty():
        _stop_with_parent(target)
    try:
        result = copy_pages(
            source_uri, target, lock_timeout=lock_timeout, use_mmap=local, direct=local
        )
    except Locked:
        print(json.dumps({"error": "locked", "locked": True}), flush=True)
        return 1
    except Unavailable as exc:
        print(json.dumps({"error": str(exc), "locked": False}), flush=True)
        return EXIT_UNAVAILABLE
    except Exception as exc:  # reported to the parent, which raises CopyFailed with it
        print(json.dumps({"error": str(exc) or type(exc).__name__, "locked": False}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
