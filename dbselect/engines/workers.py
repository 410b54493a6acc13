"""Everything the worker processes of one machine share about engines, and each one's side.

**The shared store**, under `instance/engines/` (`DBSELECT["ENGINE_STORE_DIR"]`):

- `dispose.seq`: 16 bytes mapped into memory by every worker. Bytes 0-7 hold the sequence
  number of the latest dispose request, bytes 8-15 a "please publish" counter. Reading them is
  a memory read with no system call, so the request path can look at every request.
- `engines.sqlite`: the dispose requests (path, sequence number, who, when) and the table
  each worker publishes (its engines, open connections, file descriptors, memory).

A dispose request is committed to SQLite first and the counter raised afterwards (never
lowered, under an flock), so a counter value `n` means every request numbered up to `n` is
readable. The store is machine-local, like the file sessions.

**Several servers**: with REDIS_URL set, `get_store()` returns a `RedisEngineStore`
(dbselect.engines.redis_store) with the same methods, so a dispose on one server reaches the
workers of every server, and the engines page lists them all. Each worker names itself
`<server>:<pid>`, the server being NUKEWORKS_SERVER_NAME or the host name.

**The dispose feed** (`DisposeFeed`): this process's place in that sequence; the engine cache
asks it on every request which targets other workers disposed (a memory read when none).

**This worker's side**: the report it publishes and its janitor, one daemon thread per server
process. Every ENGINE_JANITOR_TICK seconds it reads the shared counter; when another worker
asked for a dispose it applies it and closes the connections of idle threads, so no thread of
this process keeps the file open even if it never serves another request. It publishes this
worker's engine table when asked (the engines page raises a counter), after a slow query
(dbselect.engines.slow_queries: the recent ones travel with the table) and every
ENGINE_HEARTBEAT seconds.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import mmap
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from dbselect import engines
from dbselect.conf import setting
from dbselect.engines import connections as tracking
from dbselect.engines import observe, slow_queries
from dbselect.files import locks

logger = logging.getLogger("nukeworks.dbselect")

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


class StoreUnavailable(OSError):
    """The shared store cannot be reached (Redis down, for instance)."""


@dataclass(frozen=True)
class WorkerReport:
    """What one worker process last published about itself and its engines."""

    worker: str
    host: str
    pid: int
    reported: float
    data: dict[str, Any]


class SharedStore(Protocol):
    """What the dispose feed, the janitor and the engines page need of a shared store."""

    # True when the counter may start again from 0 (a store that can be emptied): a counter
    # below what the feed saw then means "everything in the store is new".
    resets: bool

    def sequence(self) -> int: ...
    def refresh_counter(self) -> int: ...
    def request_refresh(self) -> int: ...
    def record_disposals(self, paths: list[str], by: str = "") -> int: ...
    def disposals_after(
        self, seq: int, *, skip: frozenset[int] = frozenset()
    ) -> tuple[int, list[str]]: ...
    def publish(self, worker: str, host: str, pid: int, data: dict[str, Any]) -> None: ...
    def remove_worker(self, worker: str) -> None: ...
    def reports(self, *, newer_than: float = 0.0) -> list[WorkerReport]: ...
    def prune(self, older_than: float) -> None: ...


class EngineStore:
    """The shared dispose counter and engine tables in one folder (one machine)."""

    # The counter is never lowered; a feed may briefly be ahead of it (it can read a request
    # committed before the counter is raised), which must not read as a reset.
    resets = False

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

    def _counter_lock(self) -> contextlib.AbstractContextManager[int]:
        return locks.flocked(self._seq_fd, exclusive=True, timeout=None)

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

    def disposals_after(
        self, seq: int, *, skip: frozenset[int] = frozenset()
    ) -> tuple[int, list[str]]:
        """Return (highest sequence number, paths) of the dispose requests after `seq`;
        requests numbered in `skip` are counted but their paths not returned."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT seq, path FROM disposals WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        if not rows:
            return seq, []
        paths = [r[1] for r in rows if r[0] not in skip]
        return max(r[0] for r in rows), list(dict.fromkeys(paths))

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


_store: SharedStore | None = None
_store_pid: int | None = None
_store_lock = threading.Lock()


def get_store() -> SharedStore:
    """Return this process's handle on the shared store (re-opened after a fork): Redis when
    REDIS_URL is set (every server), else the folder ENGINE_STORE_DIR (this machine)."""
    global _store, _store_pid
    with _store_lock:
        if _store is None or _store_pid != os.getpid():
            from dbselect import redis_state

            if redis_state.enabled():
                from dbselect.engines.redis_store import RedisEngineStore

                _store = RedisEngineStore()
            else:
                _store = EngineStore(setting("ENGINE_STORE_DIR"))
            _store_pid = os.getpid()
        return _store


def reset_store() -> None:
    """Drop the cached handle (tests point DBSELECT at another folder)."""
    global _store
    with _store_lock:
        _store = None


# Seconds before the feed tries again to reach a store it could not reach (Redis down).
RETRY_SECONDS = 5.0


class DisposeFeed:
    """This process's view of the shared dispose counter: which targets to dispose here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._store: SharedStore | None = None
        # Requests made before this process first looked concern connections it never had.
        self._seen: int | None = None
        # While the store cannot be reached: when to try again (time.monotonic()).
        self._retry_at = 0.0
        # Requests this process made itself: applied when made. Applying one again when the
        # feed brings it back would close connections opened since, for later requests.
        self._own: set[int] = set()

    def note_own(self, seq: int) -> None:
        """Record that dispose request `seq` was made (and applied) by this process."""
        with self._lock:
            if self._seen is None or seq > self._seen:
                self._own.add(seq)

    def _ready(self) -> SharedStore | None:
        if self._store is None and time.monotonic() >= self._retry_at:
            with self._lock:
                if self._store is None and time.monotonic() >= self._retry_at:
                    try:
                        store = get_store()
                        self._seen = store.sequence()
                        self._store = store
                    except OSError as exc:
                        # A file store that cannot be opened stays so; Redis may come back.
                        logger.error("engine store unavailable, disposals stay local: %s", exc)
                        self._retry_at = time.monotonic() + RETRY_SECONDS
        return self._store

    def _unreachable(self, exc: Exception) -> list[str]:
        # Logged once per RETRY_SECONDS, not on every request while Redis is down.
        if time.monotonic() >= self._retry_at:
            logger.error("engine store unreadable: %s", exc)
            self._retry_at = time.monotonic() + RETRY_SECONDS
        return []

    def take(self) -> list[str]:
        """Return the targets other workers disposed since the last call (none: a memory read
        with the file store, one GET with Redis)."""
        store = self._ready()
        if store is None:
            return []
        try:
            current = store.sequence()
        except OSError as exc:
            return self._unreachable(exc)
        if current == (self._seen or 0) or (current < (self._seen or 0) and not store.resets):
            return []
        with self._lock:
            seen = self._seen or 0
            if current < seen and store.resets:
                # The counter went back: the store was emptied (a Redis without persistence
                # restarted). Every request in it now is newer than what this process saw.
                logger.warning("engine store counter went back from %d to %d", seen, current)
                seen, self._own = 0, set()
            elif current <= seen:
                return []
            try:
                seq, targets = store.disposals_after(seen, skip=frozenset(self._own))
            except (sqlite3.Error, OSError) as exc:
                return self._unreachable(exc)
            self._seen = max(seen, seq)
            self._own = {n for n in self._own if n > self._seen}
        return targets


HOST = socket.gethostname()
_started_at = time.time()
_janitor: threading.Thread | None = None
_janitor_pid: int | None = None
_janitor_lock = threading.Lock()


def server_name() -> str:
    """Return the name of this server in the shared store: NUKEWORKS_SERVER_NAME, else the
    host name (two servers on one host need a name each to be told apart)."""
    return str(getattr(settings, "NUKEWORKS_SERVER_NAME", "") or HOST)


def worker_id() -> str:
    """Return the id of this worker process in the shared store (server:pid)."""
    return f"{server_name()}:{os.getpid()}"


def open_fds() -> int | None:
    """Return how many file descriptors this process has open (Linux), else None."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def rss_bytes() -> int | None:
    """Return this process's resident memory in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def deep_size(obj: Any, _seen: set[int] | None = None) -> int:
    """Return the bytes held by `obj` and the dicts, lists and strings inside it."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        size += sum(deep_size(item, seen) for item in obj)
    elif hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    return size


def bytes_per_alias(sample: int = 50) -> int | None:
    """Return the average bytes one registered engine holds (settings dict + engine record)."""
    sampled = engines.all()[:sample]
    if not sampled:
        return None
    total = 0
    for engine in sampled:
        total += deep_size(connections.settings.get(engine.alias, {})) + deep_size(engine)
    return total // len(sampled)


def report() -> dict[str, Any]:
    """Return this worker's engine table and process figures, as published to the store."""
    open_counts = tracking.open_connections()
    rows = [
        {
            "path": engine.path,
            "alias": engine.alias,
            "display_name": engine.display_name,
            "journal_mode": engine.journal_mode,
            "network": engine.network,
            "first_used": engine.first_used,
            "last_used": engine.last_used,
            "requests": engine.requests,
            "open_connections": open_counts.get(engine.alias, 0),
            "settings": observe.settings_in_force(engine.alias),
        }
        for engine in engines.all()
    ]
    return {
        "pid": os.getpid(),
        "host": server_name(),
        "started": _started_at,
        "rss": rss_bytes(),
        "fds": open_fds(),
        "threads": threading.active_count(),
        "aliases": len(connections.settings),
        "bytes_per_alias": bytes_per_alias(),
        "conn_max_age": connections.settings[DEFAULT_DB_ALIAS].get("CONN_MAX_AGE", 0),
        "open_connections": sum(open_counts.values()),
        "engines": rows,
        "slow_query_ms": observe.threshold_ms(),
        "slow_queries": slow_queries.published(),
    }


def stale_after() -> float:
    """Seconds after which a worker that stopped publishing is taken for gone."""
    return 3 * float(setting("ENGINE_HEARTBEAT")) + 2.0


def publish() -> None:
    """Publish this worker's table to the shared store now."""
    get_store().publish(worker_id(), server_name(), os.getpid(), report())


def _withdraw() -> None:
    # Exiting: nothing useful to do with a failure.
    with contextlib.suppress(Exception):
        get_store().remove_worker(worker_id())


def janitor_enabled() -> bool:
    """Return True when this process should run the janitor thread."""
    return bool(setting("ENGINE_JANITOR"))


def ensure_janitor() -> None:
    """Start this process's janitor thread once (again in a forked child)."""
    global _janitor, _janitor_pid
    if _janitor_pid == os.getpid() or not janitor_enabled():
        return
    with _janitor_lock:
        if _janitor_pid == os.getpid():
            return
        _janitor_pid = os.getpid()
        _janitor = threading.Thread(target=_run, name="nukeworks-engine-janitor", daemon=True)
        _janitor.start()
        atexit.register(_withdraw)


def _run() -> None:
    tick = float(setting("ENGINE_JANITOR_TICK"))
    heartbeat = float(setting("ENGINE_HEARTBEAT"))
    store = get_store()
    seen_refresh = -1
    last_publish = 0.0
    quiet_until = 0.0
    while True:
        try:
            applied = engines.apply_remote_disposals()
            tracking.sweep_idle()
            refresh = store.refresh_counter()
            now = time.monotonic()
            # A new slow query is published at once: the other workers' pages show it.
            slow = slow_queries.take_changed()
            if applied or slow or refresh != seen_refresh or now - last_publish >= heartbeat:
                seen_refresh = refresh
                publish()
                last_publish = now
        except OSError as exc:
            # The store is out of reach (Redis restarting): said once per RETRY_SECONDS, not
            # four times a second.
            if time.monotonic() >= quiet_until:
                logger.error("engine janitor: the shared store is unavailable: %s", exc)
                quiet_until = time.monotonic() + RETRY_SECONDS
        except Exception:  # the janitor must outlive a transient store error
            logger.exception("engine janitor")
        time.sleep(tick)


def server_process_detected() -> bool:
    """Return True when this process is a gunicorn worker (the janitor can start at once)."""
    return os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn")


# The settings that choose the shared store (the store's folder is DBSELECT's, re-read by
# dbselect.apps on its own setting_changed).
STORE_SETTINGS = frozenset({"REDIS_URL", "NUKEWORKS_REDIS_PREFIX"})


def _store_setting_changed(*, setting: str, **kwargs: Any) -> None:
    # Tests move the store to Redis and back (pytest-django's `settings`, override_settings).
    if setting in STORE_SETTINGS:
        engines.reset()


def install() -> None:
    """Start this process's janitor now if it is a server process, else at its first request."""
    from django.core.signals import setting_changed

    setting_changed.connect(_store_setting_changed, dispatch_uid="nw-engine-store-settings")
    tracking.on_server_started(ensure_janitor)
    if server_process_detected():
        ensure_janitor()
