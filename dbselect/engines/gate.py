"""The maintenance gate of a database: requests pass together, a restore or migration alone.

A restore takes a safety snapshot and then writes a snapshot's pages into the live file. A
write committed between those two steps would be in neither, and acknowledged to its user
all the same. So every request working on a database holds that database's gate *shared*
for as long as it runs, and a restore or migration holds it *exclusive*: it waits for the
requests in flight to finish, and new requests wait (up to `DBSELECT["MAINTENANCE_WAIT"]`
seconds, then a 503 page that says nothing was saved) until it is done, and then work on the
restored data.

The gate is two `flock()` lock files per database in the machine's engine store folder, so it
holds across gunicorn's worker processes and threads alike (each holder opens its own file
description). These are lock files of their own, never the database file: flock() locks on
them cannot disturb SQLite's POSIX locks. The *turnstile* gives maintenance priority: a
restore first closes the turnstile, so the steady stream of new requests stops while the
ones in flight drain from the gate.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from dbselect.conf import get_config, setting
from dbselect.files import locks

POLL_INTERVAL = 0.005

_local = threading.local()
# Gate folders already made by this process (one mkdir per folder, not per request).
_made: set[Path] = set()
# (folder, database) -> its two lock files (computed once: this runs on every request).
_names: dict[tuple[object, str], tuple[str, str]] = {}


class GateClosed(Exception):
    """The database stayed under maintenance longer than the caller could wait."""


def _files(database: str) -> tuple[str, str]:
    """Return the turnstile and gate lock files of `database` (made once per store folder)."""
    store = setting("ENGINE_STORE_DIR")
    key = (store, database)
    files = _names.get(key)
    if files is None:
        folder = Path(store) / "gates"
        if folder not in _made:
            folder.mkdir(parents=True, exist_ok=True)
            _made.add(folder)
        digest = hashlib.sha256(database.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        files = (str(folder / f"{digest}.turnstile"), str(folder / f"{digest}.gate"))
        _names[key] = files
    return files


def _open(path: str) -> int:
    return locks.open_lock_file(path, mode=0o600)


def _lock(fd: int, *, exclusive: bool, deadline: float) -> bool:
    """flock() `fd` until `deadline` at the latest; return False when it timed out."""
    try:
        remaining = max(deadline - time.monotonic(), 0.0)
        # A request waiting for a restore goes on within milliseconds of its end.
        locks.acquire(fd, exclusive=exclusive, timeout=remaining, interval=POLL_INTERVAL)
    except locks.LockTimeout:
        return False
    return True


def _held() -> dict[str, int]:
    held = getattr(_local, "held", None)
    if held is None:
        held = _local.held = {}
    return held


def enter(database: str, timeout: float | None = None) -> None:
    """Hold `database`'s gate shared for the calling thread's request; raise GateClosed."""
    held = _held()
    if database in held:
        return
    wait = float(get_config()["MAINTENANCE_WAIT"]) if timeout is None else timeout
    deadline = time.monotonic() + wait
    turnstile_path, gate_path = _files(database)
    turnstile = _open(turnstile_path)
    try:
        # Pass the turnstile (closed while maintenance waits or runs), then join the gate.
        if not _lock(turnstile, exclusive=False, deadline=deadline):
            raise GateClosed(database)
    finally:
        os.close(turnstile)
    gate = _open(gate_path)
    if not _lock(gate, exclusive=False, deadline=deadline):
        os.close(gate)
        raise GateClosed(database)
    held[database] = gate


def leave_all() -> None:
    """Release every gate the calling thread holds (the end of its request)."""
    held = _held()
    for fd in held.values():
        os.close(fd)
    held.clear()


@contextlib.contextmanager
def exclusive(database: str, timeout: float = 30.0) -> Iterator[None]:
    """Hold `database` alone: no request works on it until the block ends.

    Called from a request that itself holds the gate shared (the admin's restore), that
    shared hold is given up first and taken back afterwards, so two admins restoring at once
    queue instead of waiting for each other. Raise GateClosed after `timeout` seconds.
    """
    held = _held()
    own = held.pop(database, None)
    if own is not None:
        os.close(own)
    deadline = time.monotonic() + timeout
    turnstile_path, gate_path = _files(database)
    turnstile = _open(turnstile_path)
    gate = None
    try:
        if not _lock(turnstile, exclusive=True, deadline=deadline):
            raise GateClosed(database)
        gate = _open(gate_path)
        if not _lock(gate, exclusive=True, deadline=deadline):
            raise GateClosed(database)
        yield
    finally:
        if gate is not None:
            os.close(gate)
        os.close(turnstile)
        if own is not None:
            # Back to where the request was; waiting is fine, the maintenance is over.
            with contextlib.suppress(GateClosed):
                enter(database, timeout=timeout)
