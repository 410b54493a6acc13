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
inode. A mark lasts as long as its path still names its inode: a deleted database's inode,
reused by another file, is not live. `tests/test_raw_descriptors.py` checks the request
path for raw opens of live files.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from typing import Any

FileKey = tuple[int, int]  # (st_dev, st_ino)

# key -> the path it was marked live under. An inode is reused once its file is deleted, so a
# mark counts only while that path still names the same inode (see is_live).
_live: dict[FileKey, str] = {}
_guards: dict[FileKey, threading.Lock] = {}
_guards_lock = threading.Lock()


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
    return _is_marked(key_of(st))


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
            if _is_marked(key):
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


def forget_all() -> None:
    """Forget every live file (tests that start over with new files at reused inodes)."""
    with _guards_lock:
        _live.clear()
