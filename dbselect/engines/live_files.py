"""The database files this process works on, and the one safe way to read raw bytes of others.

On Linux, closing *any* descriptor of a file releases every POSIX lock the process holds on
that file, SQLite's included (https://sqlite.org/howtocorrupt.html, section 2.2). A stray
`open()`/`close()` of a database file that another thread of this process is writing lets a
second process believe it is alone: it checkpoints and deletes the WAL under the first one,
and acknowledged writes are lost (bench/posix_lock_hazard.py reproduces it with plain
sqlite3). So the rule of this code base is:

    No code opens a database file (or its -wal/-shm) with a descriptor of its own while this
    process may hold SQLite connections to it. Use os.stat() and SQLite itself.

A file becomes *live* here as soon as it gets an engine or any Django connection is opened to
it (`mark_live`, called before the connection can take a lock). Only files that are not live
may be read raw, and only through `read_prefix`, which holds a per-file guard that
`mark_live` also takes, so a file never becomes live while a raw descriptor of it is open. The
file is first opened with O_PATH (whose close releases no lock) to learn which inode it is;
the readable descriptor is then opened through /proc/self/fd, so it can only ever be that
inode. A file is live as well while a `GuardedConnection` to it is open (validation reads
files that have no engine here yet, several threads at once: a raw read by one released the
lock of another's validation connection, and the Django connections opened next in that
process only counted that lost lock, measured under strace). A mark lasts as long as its
path still names its inode: a deleted database's inode, reused by another file, is not live.
`tests/test_raw_descriptors.py` checks the request path for raw opens of live files.

SQLite itself has the same hazard between its own connections (SQLite 3.40, os_unix.c): when a
connection closes and no other connection of the process holds a lock on the file, `unixClose`
decides under the file's lock mutex to close its descriptor for real, releases the mutex, and
only then calls close(). A thread whose connection takes its first SHARED lock in that gap (a
new connection's first read) loses it at once to that close(), while SQLite counts it as held,
so no later connection of the process takes it again either. The other worker process then
sees no reader, checkpoints and deletes the WAL and its -shm on its last close, and what this
process commits afterwards goes to the deleted WAL: acknowledged writes lost
(tests/test_durability.py, about 1 run in 15 under load, in the first seconds, when a
worker's connections come and go alone; under strace: a validation connection's close(), the
other worker unlinking -wal and -shm, lost writes whose ids the file gave to later ones, then
"disk I/O error"). In WAL mode a connection takes the SHARED lock of the database file once,
at its first read, and keeps it until it closes, so `GuardedConnection` closes the gap: its
first read and its close run under one lock per file (`sqlite_guard`). Every SQLite connection
the request path opens to a database file (runtime backend, validation, fingerprints) is one;
`tests/test_sqlite_lock_race.py` provokes the race with and without it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

FileKey = tuple[int, int]  # (st_dev, st_ino)

# key -> the path it was marked live under. An inode is reused once its file is deleted, so a
# mark counts only while that path still names the same inode (see is_live).
_live: dict[FileKey, str] = {}
_guards: dict[FileKey, threading.Lock] = {}
_guards_lock = threading.Lock()
# key -> the lock under which SQLite connections to that file take their first lock and close.
_sqlite_guards: dict[FileKey, threading.RLock] = {}
# key -> how many GuardedConnections to that file are open (changed under _guard(key)).
_open_counts: dict[FileKey, int] = {}


class LiveFile(Exception):
    """The file is one this process works on: read it through SQLite, never raw.

    `stat` is the file's stat, taken through the O_PATH descriptor.
    """

    def __init__(self, path: str, st: os.stat_result) -> None:
        super().__init__(path)
        self.stat = st


class NotRegularFile(Exception):
    """The path names a folder, device, pipe or socket; `is_dir` tells folders apart."""

    def __init__(self, is_dir: bool) -> None:
        super().__init__("folder" if is_dir else "not a regular file")
        self.is_dir = is_dir


@dataclass(frozen=True)
class RawRead:
    """The first bytes of a file that is not live, and its stat at the time of reading."""

    data: bytes
    stat: os.stat_result


def key_of(st: os.stat_result) -> FileKey:
    """Return what identifies a file whatever path names it."""
    return (st.st_dev, st.st_ino)


def _guard(key: FileKey) -> threading.Lock:
    guard = _guards.get(key)
    if guard is None:
        with _guards_lock:
            guard = _guards.setdefault(key, threading.Lock())
    return guard


def _is_marked(key: FileKey) -> bool:
    """Return True when `key` is marked live and its file still stands at the marked path."""
    path = _live.get(key)
    if path is None:
        return False
    try:
        if key_of(os.stat(path)) == key:
            return True
    except OSError:
        pass
    # The marked file is gone: this inode now belongs to another file (or to none).
    _live.pop(key, None)
    return False


def is_live(st: os.stat_result) -> bool:
    """Return True when this process works on the file described by `st`."""
    key = key_of(st)
    return _is_marked(key) or bool(_open_counts.get(key))


def mark_live(path: str) -> bool:
    """Record that this process works on the file at `path`; False when it does not exist.

    Waits for a raw read of the same file in progress to finish (its descriptor closed), so
    no descriptor opened by `read_prefix` outlives the moment SQLite may take a lock.
    """
    try:
        st = os.stat(path)
    except OSError:
        return False
    key = key_of(st)
    if _live.get(key) == path:
        return True
    with _guard(key):
        _live[key] = path
    return True


def on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Mark the file of every new SQLite connection live, before it can take a lock.

    Runtime engines are marked when they are registered; this also covers the aliases
    configured in settings and any other connection Django opens.
    """
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict.get("NAME") or "")
    if name and name != ":memory:" and not name.startswith("file:"):
        mark_live(name)


def read_prefix(path: str, size: int) -> RawRead:
    """Read the first `size` bytes of the regular file at `path`, which must not be live.

    Raise LiveFile when this process works on it, NotRegularFile for anything but a regular
    file, and OSError (FileNotFoundError, PermissionError…) as os.open does. Never creates a
    file and never blocks on a FIFO.
    """
    # O_PATH: no read access is asked for yet, and closing it releases no lock.
    path_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        st = os.fstat(path_fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(stat.S_ISDIR(st.st_mode))
        key = key_of(st)
        with _guard(key):
            if _is_marked(key) or _open_counts.get(key):
                raise LiveFile(path, st)
            # Re-opening through /proc/self/fd opens exactly the inode checked above, even if
            # the path was renamed or replaced meanwhile.
            fd = os.open(
                f"/proc/self/fd/{path_fd}",
                os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
            )
            try:
                return RawRead(os.pread(fd, size, 0), st)
            finally:
                os.close(fd)
    finally:
        os.close(path_fd)


@contextlib.contextmanager
def sqlite_guard(key: FileKey) -> Iterator[None]:
    """Hold the lock under which connections to file `key` take their first lock or close."""
    guard = _sqlite_guards.get(key)
    if guard is None:
        with _guards_lock:
            guard = _sqlite_guards.setdefault(key, threading.RLock())
    with guard:
        yield


def sqlite_file_key(database: object) -> FileKey | None:
    """Return the file a sqlite3.connect() `database` (a path or file: URI) names, if any."""
    name = os.fsdecode(database) if isinstance(database, str | bytes | os.PathLike) else ""
    if name.startswith("file:"):
        parts = urllib.parse.urlsplit(name)
        if "mode=memory" in parts.query:
            return None
        name = urllib.parse.unquote(parts.path)
    if not name or name == ":memory:":
        return None
    try:
        return key_of(os.stat(name))
    except OSError:
        return None  # nothing to open there: connect() itself says so


# SQLITE_BUSY, SQLITE_LOCKED (primary result codes).
_BUSY_CODES = (5, 6)


class GuardedConnection(sqlite3.Connection):
    """A sqlite3 connection whose first lock and whose close never interleave with another's.

    Used as `sqlite3.connect(..., factory=GuardedConnection)`. Opening reads the header
    (`PRAGMA schema_version`: one page, no schema parsed, nothing of the file runs), which in
    WAL mode takes the SHARED lock that the connection keeps until it closes; that read and the
    close hold the file's `sqlite_guard`, so a close never releases a lock another thread has
    just taken (module docstring). A file in rollback-journal mode (network paths) takes and
    drops its lock at every transaction, which this cannot cover.
    """

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        key = sqlite_file_key(database)
        self.file_key = key
        if key is None:
            super().__init__(database, *args, **kwargs)
            return
        # Live from now on: waits for a raw read of the file in progress (read_prefix), and
        # no raw read starts until this connection is closed.
        _count_connection(key, +1)
        try:
            super().__init__(database, *args, **kwargs)
            with sqlite_guard(key):
                try:
                    self.execute("PRAGMA schema_version").fetchone()
                except sqlite3.OperationalError as exc:
                    if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in _BUSY_CODES:
                        super().close()  # under the guard already
                        raise
                    # Locked by a writer: a rollback-journal file (WAL readers never wait for
                    # writers), which keeps no lock between transactions, so there is nothing
                    # to guard; the caller's own queries wait or give up as it chose.
                except BaseException:
                    super().close()  # under the guard already
                    raise
        except BaseException:
            self.file_key = None
            _count_connection(key, -1)
            raise

    def close(self) -> None:
        key = getattr(self, "file_key", None)
        if key is None:
            super().close()
            return
        with sqlite_guard(key):
            super().close()
        self.file_key = None
        _count_connection(key, -1)


def _count_connection(key: FileKey, delta: int) -> None:
    with _guard(key):
        count = _open_counts.get(key, 0) + delta
        if count > 0:
            _open_counts[key] = count
        else:
            _open_counts.pop(key, None)


def forget_all() -> None:
    """Forget every live file (tests that start over with new files at reused inodes)."""
    with _guards_lock:
        _live.clear()
