"""One lock per snapshots folder, shared by threads and by gunicorn's worker processes.

Creating snapshots may overlap; a restore, a delete or a prune may not overlap with anything,
so a snapshot is never deleted while it is being restored and two restores never interleave.
The lock is a file of the folder, held with dbselect.files.locks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from dbselect.files.locks import LockTimeout, flocked
from snapshots.errors import SnapshotBusy, SnapshotError

LOCK_NAME = ".snapshots.lock"

__all__ = ["LOCK_NAME", "SnapshotBusy", "folder_lock"]


@contextmanager
def folder_lock(folder: Path, *, exclusive: bool, timeout: float = 30.0) -> Iterator[None]:
    """Hold the folder's lock (shared or exclusive); raise SnapshotBusy after `timeout`.

    Raise SnapshotError when the folder or its lock file cannot be used.
    """
    with ExitStack() as stack:
        try:
            folder.mkdir(exist_ok=True)
            # A link planted under the lock's name is never opened (nor created through): the
            # lock is refused, and the snapshots page reports the link. A FIFO cannot hang it.
            stack.enter_context(flocked(folder / LOCK_NAME, exclusive=exclusive, timeout=timeout))
        except LockTimeout:
            raise SnapshotBusy(
                "Another snapshot operation on this database is still running. "
                "Try again in a moment."
            ) from None
        except OSError as exc:
            raise SnapshotError(
                f"The snapshots folder cannot be used: {exc.strerror or exc} "
                f"({folder / LOCK_NAME})."
            ) from exc
        yield
