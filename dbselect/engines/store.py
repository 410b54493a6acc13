"""The store every worker process of one machine shares, under `instance/engines/`.

- `dispose.seq`: 16 bytes mapped into memory by every worker. Bytes 0-7 hold the sequence
  number of the latest dispose request, bytes 8-15 a "please publish" counter. Reading them is
  a memory read with no system call, so the request hot path can look at every request.
- `engines.sqlite`: the dispose requests (path, sequence number, who, when) and the table
  each worker publishes (its engines, open connections, file descriptors, memory).

A dispose request is committed to SQLite first and the counter raised afterwards (never
lowered, under an flock), so a counter value `n` means every request numbered up to `n` is
readable. This store is machine-local, like the file sessions; several machines would need a
shared one (e.g. Redis) instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEQ_FILE = "dispose.seq"
DB_FILE = "engines.sqlite"
# Dispose requests older than this are deleted: every live worker has long applied them.
KEEP_DISPOSALS_SECONDS = 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS disposals (
    seq INTEGER NOT NULL, path TEXT NOT NULL, at REAL NOT NULL, by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS disposals_seq ON disposals (seq);
CREATE TABLE IF NOT EXISTS workers (
    worker TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
    reported REAL NOT NULL, report TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class WorkerReport:
    """What one worker process last published about itself and its engines."""

    worker: str
    host: str
    pid: int
    reported: float
    data: dict[str, Any]


class EngineStore:
    """The shared dispose counter and engine tables in one folder."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db_path = self.folder / DB_FILE
        self._seq_fd = os.open(self.folder / SEQ_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if os.fstat(self._seq_fd).st_size < 16:
            os.ftruncate(self._seq_fd, 16)  # zero-filled; harmless if two processes race
        self._mm = mmap.mmap(self._seq_fd, 16)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    # -- the counters in shared memory ------------------------------------------------------

    def sequence(self) -> int:
        """Return the number of the latest dispose request (a memory read)."""
        return int.from_bytes(self._mm[0:8], "little")

    def refresh_counter(self) -> int:
        """Return the "please publish your engine table" counter."""
        return int.from_bytes(self._mm[8:16], "little")

    @contextlib.contextmanager
    def _counter_lock(self) -> Iterator[None]:
        fcntl.flock(self._seq_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._seq_fd, fcntl.LOCK_UN)

    def _raise_sequence(self, seq: int) -> None:
        with self._counter_lock():
            if seq > self.sequence():
                self._mm[0:8] = seq.to_bytes(8, "little")

    def request_refresh(self) -> int:
        """Ask every worker to publish its engine table now; return the new counter."""
        with self._counter_lock():
            value = self.refresh_counter() + 1
            self._mm[8:16] = value.to_bytes(8, "little")
        return value

    # -- the SQLite file --------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.db_path, timeout=10.0, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            if not self._schema_ready:
                with self._schema_lock:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.executescript(_SCHEMA)
                    self._schema_ready = True
            yield conn
        finally:
            conn.close()

    def record_disposals(self, paths: list[str], by: str = "") -> int:
        """Record a dispose request for `paths`; return its sequence number."""
        now = time.time()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                (last,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM disposals").fetchone()
                # Never below the shared counter, even if old rows were deleted.
                seq = max(int(last), self.sequence()) + 1
                conn.executemany(
                    "INSERT INTO disposals (seq, path, at, by) VALUES (?, ?, ?, ?)",
                    [(seq, path, now, by) for path in paths],
                )
                conn.execute(
                    "DELETE FROM disposals WHERE at < ? AND seq < ?",
                    (now - KEEP_DISPOSALS_SECONDS, seq),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self._raise_sequence(seq)
        return seq

    def disposals_after(self, seq: int) -> tuple[int, list[str]]:
        """Return (highest sequence number, paths) of the dispose requests after `seq`."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT seq, path FROM disposals WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        if not rows:
            return seq, []
        return max(r[0] for r in rows), list(dict.fromkeys(r[1] for r in rows))

    def publish(self, worker: str, host: str, pid: int, data: dict[str, Any]) -> None:
        """Replace the table worker `worker` publishes."""
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO workers (worker, host, pid, reported, report) "
                "VALUES (?, ?, ?, ?, ?)",
                (worker, host, pid, time.time(), json.dumps(data)),
            )

    def remove_worker(self, worker: str) -> None:
        """Forget a worker's table (it is exiting)."""
        with self._connect() as conn:
            conn.execute("DELETE FROM workers WHERE worker = ?", (worker,))

    def reports(self, *, newer_than: float = 0.0) -> list[WorkerReport]:
        """Return the tables published since `newer_than` (seconds since the epoch)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT worker, host, pid, reported, report FROM workers "
                "WHERE reported >= ? ORDER BY pid",
                (newer_than,),
            ).fetchall()
        return [WorkerReport(w, h, p, r, json.loads(data)) for w, h, p, r, data in rows]

    def prune(self, older_than: float) -> None:
        """Delete the tables of workers that stopped publishing (crashed or killed)."""
        with self._connect() as conn:
            conn.execute("DELETE FROM workers WHERE reported < ?", (older_than,))


_store: EngineStore | None = None
_store_pid: int | None = None
_store_lock = threading.Lock()


def get_store() -> EngineStore:
    """Return this process's handle on the shared store (re-opened after a fork)."""
    global _store, _store_pid
    from dbselect.conf import setting

    with _store_lock:
        if _store is None or _store_pid != os.getpid():
            _store = EngineStore(setting("ENGINE_STORE_DIR"))
            _store_pid = os.getpid()
        return _store


def reset_store() -> None:
    """Drop the cached handle (tests point DBSELECT at another folder)."""
    global _store
    with _store_lock:
        _store = None
