"""This worker process's side of the engine administration: its report and its janitor.

The janitor is one daemon thread per server process. Every ENGINE_JANITOR_TICK seconds it
reads the shared dispose counter (a memory read); when another worker asked for a dispose it
applies it and closes the connections of idle threads, so no thread of this process keeps the
file open even if it never serves another request. It publishes this worker's engine table
when asked (the engines page raises a counter) and every ENGINE_HEARTBEAT seconds.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from dbselect import engines
from dbselect.conf import setting
from dbselect.engines import connections as tracking
from dbselect.engines.store import get_store

logger = logging.getLogger("nukeworks.dbselect")

HOST = socket.gethostname()
_started_at = time.time()
_janitor: threading.Thread | None = None
_janitor_pid: int | None = None
_janitor_lock = threading.Lock()


def worker_id() -> str:
    """Return the id of this worker process in the shared store (host:pid)."""
    return f"{HOST}:{os.getpid()}"


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
        }
        for engine in engines.all()
    ]
    return {
        "pid": os.getpid(),
        "host": HOST,
        "started": _started_at,
        "rss": rss_bytes(),
        "fds": open_fds(),
        "threads": threading.active_count(),
        "aliases": len(connections.settings),
        "bytes_per_alias": bytes_per_alias(),
        "conn_max_age": connections.settings[DEFAULT_DB_ALIAS].get("CONN_MAX_AGE", 0),
        "open_connections": sum(open_counts.values()),
        "engines": rows,
    }


def publish() -> None:
    """Publish this worker's table to the shared store now."""
    get_store().publish(worker_id(), HOST, os.getpid(), report())


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
    while True:
        try:
            applied = engines.apply_remote_disposals()
            tracking.sweep_idle()
            refresh = store.refresh_counter()
            now = time.monotonic()
            if applied or refresh != seen_refresh or now - last_publish >= heartbeat:
                seen_refresh = refresh
                publish()
                last_publish = now
        except Exception:  # the janitor must outlive a transient store error
            logger.exception("engine janitor")
        time.sleep(tick)


def server_process_detected() -> bool:
    """Return True when this process is a gunicorn worker (the janitor can start at once)."""
    return os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn")


def install() -> None:
    """Connect the connection bookkeeping to Django's signals and start the janitor if serving.

    Our request_started receiver must run *before* the close_old_connections step: from that
    moment the thread holds its lock, so the janitor never closes a connection that is being
    checked in the same thread at the same time.
    """
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections, reset_queries
    from django.db.backends.signals import connection_created

    connection_created.connect(tracking.on_connection_created, dispatch_uid="nw-tracking-created")
    # Django's receivers cost O(registered aliases) per request; ours, O(this thread's own
    # connections) for the same work (see dbselect/tracking.py).
    tracking.configured_aliases[:] = list(settings.DATABASES)
    request_started.disconnect(reset_queries)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    request_started.connect(tracking.on_request_started, dispatch_uid="nw-tracking-started")
    request_started.connect(tracking.reset_queries_here, dispatch_uid="nw-reset-queries")
    request_started.connect(tracking.close_old_connections_here, dispatch_uid="nw-close-old")
    request_finished.connect(tracking.close_old_connections_here, dispatch_uid="nw-close-old")
    request_finished.connect(tracking.on_request_finished, dispatch_uid="nw-tracking-finished")
    tracking.on_server_started(ensure_janitor)
    if server_process_detected():
        ensure_janitor()
