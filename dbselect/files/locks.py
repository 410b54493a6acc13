"""flock() lock files: the one helper for every lock taken across threads and processes.

flock() locks belong to the open file description, so two threads of one process that each
opened the lock file exclude each other too, and a lock ends when its description is closed
(a crashed process releases everything it held). A lock file is a file of its own, never a
database file: closing any descriptor of a database releases the POSIX locks SQLite holds on
it (dbselect.engines.live_files).

Lock files are opened with O_NOFOLLOW (a link planted under the lock's name is refused, never
followed or created through), O_NONBLOCK (a FIFO put there cannot hang the open) and
O_CLOEXEC (child processes do not inherit the lock).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: only one process serves NukeWorks there
    fcntl = None  # type: ignore[assignment]

# Seconds between two attempts at a lock someone else holds.
POLL_INTERVAL = 0.05

__all__ = [
    "POLL_INTERVAL",
    "LockTimeout",
    "acquire",
    "flocked",
    "held_elsewhere",
    "open_lock_file",
    "release",
]


class LockTimeout(Exception):
    """Somebody else held the lock for longer than the caller was willing to wait."""

    def __init__(self, target: object, timeout: float) -> None:
        super().__init__(f"{target}: still locked by someone else after {timeout:g} s")
        self.target = target
        self.timeout = timeout


def open_lock_file(
    path: str | os.PathLike[str], *, nofollow: bool = True, mode: int = 0o644
) -> int:
    """Open (creating it if needed) the lock file at `path`; return its descriptor.

    Raise OSError when it cannot be opened: ELOOP for a link with `nofollow`, among others.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
    if nofollow:
        flags |= os.O_NOFOLLOW
    return os.open(path, flags, mode)


def acquire(
    fd: int,
    *,
    exclusive: bool,
    timeout: float | None,
    target: object = None,
    interval: float = POLL_INTERVAL,
) -> None:
    """flock() `fd` shared or exclusive; wait at most `timeout` seconds (None: for ever).

    While someone else holds it, try again every `interval` seconds.

    Raise LockTimeout when the lock is still held elsewhere after `timeout`.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    if timeout is None:
        fcntl.flock(fd, mode)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeout(fd if target is None else target, timeout) from None
            time.sleep(interval)


def release(fd: int) -> None:
    """Give up the flock() held through `fd` (the descriptor stays open)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def flocked(
    target: str | os.PathLike[str] | int,
    *,
    exclusive: bool,
    timeout: float | None,
    nofollow: bool = True,
    mode: int = 0o644,
) -> Iterator[int]:
    """Hold a flock() on `target` for the block; yield the locked descriptor.

    `target` is the path of a lock file (opened as open_lock_file does and closed at the end,
    which releases the lock) or a descriptor the caller owns (unlocked at the end, left
    open). Raise LockTimeout after `timeout` seconds (None waits for ever), OSError when the
    lock file cannot be opened.
    """
    if isinstance(target, int):
        acquire(target, exclusive=exclusive, timeout=timeout)
        try:
            yield target
        finally:
            release(target)
        return
    fd = open_lock_file(target, nofollow=nofollow, mode=mode)
    try:
        acquire(fd, exclusive=exclusive, timeout=timeout, target=target)
        yield fd
    finally:
        os.close(fd)


def held_elsewhere(path: str | os.PathLike[str]) -> bool:
    """Return True while somebody holds the lock file at `path` (any process of this machine).

    A missing or unusable lock file is held by nobody. Never creates the file.
    """
    if not os.path.exists(path):
        return False
    try:
        with flocked(path, exclusive=True, timeout=0):
            return False
    except LockTimeout:
        return True
    except OSError:
        return False
