"""The metrics NukeWorks keeps, every one labelled by database, and what feeds them.

Each database is named by its label (dbselect.engines.observe.database_label: the catalog
label of databases/<label>/, else its alias `nw_<hash>`), never by the path of a file a user
typed. Requests that work on no database are counted under "none".

- per request (metrics.middleware): requests by status class, 5xx answers, latency; the
  statements each database ran for the request and their seconds (the connections'
  observers count them, dbselect.engines.observe);
- slow queries (dbselect.signals.slow_query);
- snapshots, restores and migrations (dbselect.signals.operation_finished, sent by the
  services of snapshots and migrating) and the task queue's jobs (huey's own signals);
- open engines and connections are read at scrape time from the engine tables the workers
  publish (metrics.collectors), not kept here.

Under gunicorn every worker process writes its values to its own files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) and /metrics adds them up.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from dbselect.engines import observe

# The `_created` series exist in single-process mode only; without them both modes expose the
# same series.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "nukeworks_http_requests",
    "HTTP requests answered, by the database they worked on and status class.",
    ["database", "status"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "nukeworks_http_errors",
    "HTTP requests answered with a server error (5xx), by database.",
    ["database"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "nukeworks_http_request_duration_seconds",
    "Time to answer a request (the whole middleware stack), by database.",
    ["database"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
QUERIES = Counter(
    "nukeworks_db_queries",
    "SQL statements run, by database.",
    ["database"],
    registry=REGISTRY,
)
QUERY_SECONDS = Counter(
    "nukeworks_db_query_seconds",
    "Seconds spent executing SQL statements (until their first row), by database.",
    ["database"],
    registry=REGISTRY,
)
SLOW_QUERIES = Counter(
    "nukeworks_db_slow_queries",
    "Statements at or over the slow-query threshold (NUKEWORKS_SLOW_QUERY_MS), by database.",
    ["database"],
    registry=REGISTRY,
)
_LONG = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
SNAPSHOTS = Histogram(
    "nukeworks_snapshot_duration_seconds",
    "Snapshots taken (operation=create) and restored (operation=restore), by database.",
    ["database", "operation", "outcome"],
    buckets=_LONG,
    registry=REGISTRY,
)
MIGRATIONS = Histogram(
    "nukeworks_migration_duration_seconds",
    "Migrations of a database (its safety snapshot included).",
    ["database", "outcome"],
    buckets=_LONG,
    registry=REGISTRY,
)
JOBS = Histogram(
    "nukeworks_job_duration_seconds",
    "Jobs of the task queue (e.g. build_database), by job and the database they build.",
    ["job", "database", "outcome"],
    buckets=_LONG,
    registry=REGISTRY,
)

# (metric, labels) -> child: prometheus-client looks labels up under a lock every time.
_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """Return the child of `metric` for `labels`, cached."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def _status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def observe_request(alias: str | None, status: int, seconds: float) -> None:
    """Count one answered request on `alias` and the statements its thread ran meanwhile."""
    label = observe.database_label(alias)
    child(REQUESTS, label, _status_class(status)).inc()
    if status >= 500:
        child(ERRORS, label).inc()
    child(LATENCY, label).observe(seconds)
    for queried, count, spent in observe.drain():
        name = label if queried == alias else observe.database_label(queried)
        child(QUERIES, name).inc(count)
        child(QUERY_SECONDS, name).inc(spent)


# -- receivers ------------------------------------------------------------------------------


def on_slow_query(sender: Any, *, label: str, **kwargs: Any) -> None:
    child(SLOW_QUERIES, label).inc()


def on_operation_finished(
    sender: Any, *, kind: str, path: str, seconds: float, outcome: str, **kwargs: Any
) -> None:
    label = observe.label_for_path(path)
    if kind.startswith("snapshot."):
        SNAPSHOTS.labels(label, kind.split(".", 1)[1], outcome).observe(seconds)
    elif kind == "migration":
        MIGRATIONS.labels(label, outcome).observe(seconds)


_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_jobs_started: dict[str, float] = {}
_jobs_lock = threading.Lock()


def _job_database(task: Any) -> str:
    """The database a job works on: its first argument, a label or a database file's path."""
    args = getattr(task, "args", None) or ()
    first = args[0] if args else None
    if not isinstance(first, str):
        return ""
    if _LABEL.match(first):
        return first
    return observe.label_for_path(first) if os.path.isabs(first) else ""


def on_job_signal(signal: str, task: Any, *args: Any, **kwargs: Any) -> None:
    """huey's signals: a job's start, then its end (complete, error, ...)."""
    task_id = str(getattr(task, "id", ""))
    if signal == "executing":
        with _jobs_lock:
            _jobs_started[task_id] = time.monotonic()
        return
    with _jobs_lock:
        started = _jobs_started.pop(task_id, None)
    if started is None:
        return
    outcome = "ok" if signal == "complete" else signal
    JOBS.labels(getattr(task, "name", "job"), _job_database(task), outcome).observe(
        time.monotonic() - started
    )


JOB_END_SIGNALS = ("complete", "error", "canceled", "interrupted", "timeout", "locked")


def connect_huey() -> bool:
    """Listen to the task queue's signals (when huey is installed); return True if connected."""
    try:
        from huey.contrib.djhuey import HUEY
    except Exception:  # no task queue configured
        return False
    HUEY.signal("executing", *JOB_END_SIGNALS)(on_job_signal)
    return True
