"""The engines page's data and actions, over every worker process of this machine.

`overview()` publishes this worker's table, asks the others to publish theirs (they answer
within one janitor tick), waits up to ENGINE_REFRESH_WAIT seconds for them, and merges the
tables by database path. `dispose_paths()` records a dispose request in the shared store,
applies it in this process at once, and writes an audit entry per path.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass, field

from django.http import HttpRequest

from audit import log as audit_log
from dbselect import engines, state
from dbselect.conf import setting
from dbselect.engines import workers as engine_worker
from dbselect.engines.session_counts import SessionCounts, count_sessions
from dbselect.engines.workers import WorkerReport, get_store
from dbselect.session import display_name_for


def _when(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


@dataclass
class WorkerUse:
    """One worker process's use of one engine."""

    pid: int
    requests: int
    open_connections: int
    last_used: float


@dataclass
class EngineRow:
    """One database path as cached by one or more worker processes."""

    path: str
    alias: str
    display_name: str
    journal_mode: str
    network: bool
    first_used: float
    last_used: float
    requests: int = 0
    open_connections: int = 0
    sessions: int | None = None
    workers: list[WorkerUse] = field(default_factory=list)

    @property
    def first_used_at(self) -> datetime.datetime:
        return _when(self.first_used)

    @property
    def last_used_at(self) -> datetime.datetime:
        return _when(self.last_used)

    def idle(self, now: float, idle_seconds: float) -> bool:
        """Return True when no worker has used this engine for `idle_seconds`."""
        return now - self.last_used >= idle_seconds


@dataclass
class WorkerRow:
    """One worker process and its figures."""

    pid: int
    host: str
    reported: float
    current: bool
    rss: int | None
    fds: int | None
    threads: int
    aliases: int
    engines: int
    open_connections: int
    conn_max_age: int | None
    bytes_per_alias: int | None = None

    @property
    def reported_at(self) -> datetime.datetime:
        return _when(self.reported)


@dataclass
class Overview:
    """Everything the engines page shows."""

    workers: list[WorkerRow]
    engines: list[EngineRow]
    sessions: SessionCounts
    idle_seconds: float
    missing: int
    now: float

    def idle_paths(self) -> list[str]:
        """Return the paths no worker has used for `idle_seconds`."""
        return [e.path for e in self.engines if e.idle(self.now, self.idle_seconds)]


def _stale_after() -> float:
    """Seconds after which a worker that stopped publishing is taken for gone."""
    return 3 * float(setting("ENGINE_HEARTBEAT")) + 2.0


def collect(wait: float | None = None) -> tuple[list[WorkerReport], int]:
    """Return fresh tables of every live worker and how many did not answer in time."""
    store = get_store()
    engine_worker.publish()
    wait = float(setting("ENGINE_REFRESH_WAIT")) if wait is None else wait
    asked = time.time()
    live = store.reports(newer_than=asked - _stale_after())
    store.prune(asked - 10 * _stale_after())
    others = {r.worker for r in live if r.worker != engine_worker.worker_id()}
    if others and wait > 0:
        store.request_refresh()
        deadline = time.monotonic() + wait
        while True:
            fresh = {r.worker for r in store.reports(newer_than=asked)}
            if others <= fresh or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    reports = store.reports(newer_than=asked - _stale_after())
    missing = len(others - {r.worker for r in reports if r.reported >= asked})
    return reports, missing


def overview(wait: float | None = None) -> Overview:
    """Return the merged engine table of every worker process, with session counts."""
    reports, missing = collect(wait)
    sessions = count_sessions()
    me = os.getpid()
    by_path: dict[str, EngineRow] = {}
    workers: list[WorkerRow] = []
    for rep in reports:
        data = rep.data
        engines = data.get("engines", [])
        workers.append(
            WorkerRow(
                pid=rep.pid,
                host=rep.host,
                reported=rep.reported,
                current=rep.pid == me and rep.host == engine_worker.HOST,
                rss=data.get("rss"),
                fds=data.get("fds"),
                threads=int(data.get("threads", 0)),
                aliases=int(data.get("aliases", 0)),
                engines=len(engines),
                open_connections=int(data.get("open_connections", 0)),
                conn_max_age=data.get("conn_max_age"),
                bytes_per_alias=data.get("bytes_per_alias"),
            )
        )
        for item in engines:
            row = by_path.get(item["path"])
            if row is None:
                row = by_path[item["path"]] = EngineRow(
                    path=item["path"],
                    alias=item["alias"],
                    display_name=display_name_for(item["path"], item.get("display_name")),
                    journal_mode=item["journal_mode"],
                    network=bool(item["network"]),
                    first_used=item["first_used"],
                    last_used=item["last_used"],
                    sessions=sessions.for_path(item["path"]),
                )
            row.first_used = min(row.first_used, item["first_used"])
            row.last_used = max(row.last_used, item["last_used"])
            row.requests += int(item["requests"])
            row.open_connections += int(item["open_connections"])
            row.workers.append(
                WorkerUse(
                    rep.pid, int(item["requests"]), int(item["open_connections"]), item["last_used"]
                )
            )
    engines = sorted(by_path.values(), key=lambda r: (-r.last_used, r.path))
    return Overview(
        workers=workers,
        engines=engines,
        sessions=sessions,
        idle_seconds=float(setting("ENGINE_IDLE_SECONDS")),
        missing=missing,
        now=time.time(),
    )


def dispose_paths(paths: list[str], request: HttpRequest | None = None) -> int:
    """Dispose `paths` in every worker process and audit it; return how many were disposed."""
    if not paths:
        return 0
    user = getattr(request, "user", None)
    by = getattr(user, "username", "") if user is not None else ""
    get_store().record_disposals(paths, by=by)
    for path in paths:
        cached_here = engines.dispose(path)
        audit_log.record(
            "engine.dispose",
            target=path,
            detail="Connections closed in every worker process; "
            + (
                "it was cached by the worker that served this request."
                if cached_here
                else "it was not cached by the worker that served this request."
            ),
            request=request,
            using=state.get_active_alias(),
        )
    return len(paths)
