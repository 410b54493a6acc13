"""One lock per snapshots folder, shared by threads and by gunicorn's worker processes.

Creating snapshots may overlap; a restore, a delete or a prune may not overlap with anything,
so a snapshot is never deleted while it is being restored and two restores never interleave.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: only one process serves NukeWorks there
    fcntl = None  # type: ignore[assignment]

from snapshots.errors import SnapshotBusy, SnapshotError

LOCK_NAME = ".snapshots.lock"

__all__ = ["LOCK_NAME", "SnapshotBusy", "folder_lock"]


@contextmanager
def folder_lock(folder: Path, *, exclusive: bool, timeout: float = 30.0) -> Iterator[None]:
    """Hold the folder's lock (shared or exclusive); raise SnapshotBusy after `timeout`.

    Raise SnapshotError when the folder or its lock file cannot be used.
    """
    try:
        folder.mkdir(exist_ok=True)
        # O_NOFOLLOW: a link planted under the lock's name is never opened (nor created
        # through): the lock is refused, and the snapshots page reports the link.
        # O_NONBLOCK: a FIFO put there cannot hang the open.
        fd = os.open(
            folder / LOCK_NAME,
            os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            0o644,
        )
    except OSError as exc:
        raise SnapshotError(
            f"The snapshots folder cannot be used: {exc.strerror or exc} ({folder / LOCK_NAME})."
        ) from exc
    try:
        if fcntl is not None:
            # flock() locks belong to the open file, so threads of one process exclude each
            # other too (each opened the lock file itself).
            mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, mode)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise SnapshotBusy(
                            "Another snapshot operation on this database is still running. "
                            "Try again in a moment."
                        ) from None
                    time.sleep(0.05)
        yield
    finally:
        os.close(fd)
