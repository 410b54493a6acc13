"""The engines page's data and actions, over every worker process of this machine (of every
server, with REDIS_URL: dbselect.engines.redis_store).

`overview()` publishes this worker's table, asks the others to publish theirs (they answer
within one janitor tick), waits for them up to `wait` seconds (none for the page itself,
which shows what is known at once; its refresh endpoint waits up to ENGINE_REFRESH_WAIT),
and merges the tables by database path: usage, the connection settings in force, and the
recent slow queries. `dispose_paths()` records a dispose request in the shared store, applies
it in this process at once, and writes an audit entry per path.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

from audit import log as audit_log
from dbselect import catalog, engines, state
from dbselect.conf import setting
from dbselect.engines import observe, slow_queries
from dbselect.engines import workers as engine_worker
from dbselect.engines.session_counts import SessionCounts, count_sessions
from dbselect.engines.workers import WorkerReport, get_store
from dbselect.session import display_name_for


def when(timestamp: float) -> datetime.datetime:
    """Return a time of the worker tables (seconds since the epoch) as an aware datetime."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


@dataclass
class WorkerUse:
    """One worker process's use of one engine."""

    pid: int
    requests: int
    open_connections: int
    last_used: float
    # The server the worker runs on (NUKEWORKS_SERVER_NAME or its host name).
    host: str = ""


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
    # Journal mode, synchronous, busy timeout, CONN_MAX_AGE, per-thread cap in force
    # (dbselect.engines.observe.settings_in_force), as a worker that has connected saw them.
    settings: dict[str, Any] = field(default_factory=dict)
    slow_queries: list[dict[str, Any]] = field(default_factory=list)
    # "sqlite", or "postgresql" for a catalog entry (`path` is then its target).
    kind: str = "sqlite"
    # A PostgreSQL database's redacted URL and host:port/dbname ("" when no longer in the
    # catalog); a file's path is `path`.
    location: str = ""
    server: str = ""

    @property
    def is_file(self) -> bool:
        return self.kind == "sqlite"

    @property
    def journal(self) -> str:
        return str(self.settings.get("journal_mode") or self.journal_mode).upper()

    @property
    def first_used_at(self) -> datetime.datetime:
        return when(self.first_used)

    @property
    def last_used_at(self) -> datetime.datetime:
        return when(self.last_used)

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
        return when(self.reported)


@dataclass
class Overview:
    """Everything the engines page shows."""

    workers: list[WorkerRow]
    engines: list[EngineRow]
    sessions: SessionCounts
    idle_seconds: float
    missing: int
    now: float
    # When the workers were asked to publish (the page's refresh waits for tables newer).
    asked: float = 0.0
    slow_query_ms: float | None = None

    @property
    def asked_at(self) -> datetime.datetime:
        return when(self.asked)

    @property
    def several_servers(self) -> bool:
        """True when workers of more than one server reported (REDIS_URL): name the server."""
        return len({w.host for w in self.workers}) > 1

    def idle_paths(self) -> list[str]:
        """Return the paths no worker has used for `idle_seconds`."""
        return [e.path for e in self.engines if e.idle(self.now, self.idle_seconds)]


def collect(
    wait: float | None = None, since: float | None = None
) -> tuple[list[WorkerReport], int, float]:
    """Return the tables of every live worker, how many are older than the question, and when
    it was asked.

    Every other worker is asked to publish (at `since`, the page's own question, if given;
    else now); this waits up to `wait` seconds (default ENGINE_REFRESH_WAIT; 0: not at all) for
    their answers.
    """
    store = get_store()
    engine_worker.publish()
    wait = float(setting("ENGINE_REFRESH_WAIT")) if wait is None else wait
    now = time.time()
    asked = now if since is None else min(float(since), now)
    live = store.reports(newer_than=now - engine_worker.stale_after())
    store.prune(now - 10 * engine_worker.stale_after())
    others = {r.worker for r in live if r.worker != engine_worker.worker_id()}
    if others - {r.worker for r in live if r.reported >= asked}:
        store.request_refresh()
        deadline = time.monotonic() + max(wait, 0.0)
        while wait > 0:
            fresh = {r.worker for r in store.reports(newer_than=asked)}
            if others <= fresh or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    reports = store.reports(newer_than=time.time() - engine_worker.stale_after())
    missing = len(others - {r.worker for r in reports if r.reported >= asked})
    return reports, missing, asked


def _merge_settings(known: dict[str, Any], seen: dict[str, Any] | None) -> dict[str, Any]:
    """Keep what a worker observed on a real connection over what is only configured."""
    if not seen:
        return known
    if not known or (seen.get("observed") and not known.get("observed")):
        return dict(seen)
    return known


class _CatalogLocations:
    """Where the PostgreSQL databases of the catalog live, as people may see it (redacted
    URL, host:port/dbname); the catalog is read once per table, and only when one is listed."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, str]] | None = None

    def __call__(self, target: str) -> tuple[str, str]:
        if self._known is None:
            try:
                listed = catalog.entries()
            except Exception:  # the catalog's Redis is down: the table is shown all the same
                listed = []
            self._known = {e.target: (e.redacted_url, e.url.server()) for e in listed}
        return self._known.get(target, ("", ""))


def overview(wait: float | None = None, since: float | None = None) -> Overview:
    """Return the merged engine table of every worker process, with session counts."""
    reports, missing, asked = collect(wait, since)
    sessions = count_sessions()
    me_worker = engine_worker.worker_id()
    slow: dict[str, list[list[dict[str, Any]]]] = {}
    by_path: dict[str, EngineRow] = {}
    workers: list[WorkerRow] = []
    locations = _CatalogLocations()
    for rep in reports:
        data = rep.data
        engines = data.get("engines", [])
        if rep.worker != me_worker:
            for path, entries in (data.get("slow_queries") or {}).items():
                slow.setdefault(path, []).append(list(entries))
        workers.append(
            WorkerRow(
                pid=rep.pid,
                host=rep.host,
                reported=rep.reported,
                current=rep.worker == me_worker,
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
                if catalog.is_target(row.path):
                    row.kind = catalog.KIND
                    row.location, row.server = locations(row.path)
                else:
                    row.location = row.path
            row.settings = _merge_settings(row.settings, item.get("settings"))
            row.first_used = min(row.first_used, item["first_used"])
            row.last_used = max(row.last_used, item["last_used"])
            row.requests += int(item["requests"])
            row.open_connections += int(item["open_connections"])
            row.workers.append(
                WorkerUse(
                    rep.pid,
                    int(item["requests"]),
                    int(item["open_connections"]),
                    item["last_used"],
                    host=rep.host,
                )
            )
    keep = max(int(setting("SLOW_QUERY_KEEP")), 1)
    for row in by_path.values():
        # This worker's own list as it is now (its published one may be a moment old).
        lists = [*slow.get(row.path, []), slow_queries.recent(row.path)]
        row.slow_queries = [
            {**entry, "when": when(entry["at"])} for entry in slow_queries.merge(lists, limit=keep)
        ]
    engines = sorted(by_path.values(), key=lambda r: (-r.last_used, r.path))
    return Overview(
        workers=workers,
        engines=engines,
        sessions=sessions,
        idle_seconds=float(setting("ENGINE_IDLE_SECONDS")),
        missing=missing,
        now=time.time(),
        asked=asked,
        slow_query_ms=observe.threshold_ms(),
    )


def dispose_paths(paths: list[str], request: HttpRequest | None = None) -> int:
    """Dispose `paths` in every worker process and audit it; return how many were disposed."""
    if not paths:
        return 0
    user = getattr(request, "user", None)
    by = getattr(user, "username", "") if user is not None else ""
    engines.cache().note_own_disposal(get_store().record_disposals(paths, by=by))
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
