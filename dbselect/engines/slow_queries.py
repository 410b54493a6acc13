"""The slow-query log per database, and the recent slow queries every worker can show.

A statement that ran for `DBSELECT["SLOW_QUERY_MS"]` milliseconds or more on any alias (0:
every statement; negative: the log is off) is reported by its connection's observer
(dbselect.engines.observe) to `record()`, which

- logs one line on the `nukeworks.slow_query` logger (WARNING) whose fields are also given
  as `extra` (event, database, alias, db_path, duration_ms, sql, many, request_path, user,
  pid), so a JSON formatter writes them as fields;
- keeps it in this process's recent list of that database (the newest
  `DBSELECT["SLOW_QUERY_KEEP"]` per database, at most MAX_DATABASES databases);
- sends `dbselect.signals.slow_query` (the metrics app counts it).

The SQL is the statement as Django sent it, its parameters never included: placeholders
read `?`, quoted string literals in the text are elided to `'?'` too, and it is cut at
MAX_SQL characters.

Every worker process publishes its recent lists with its engine table
(dbselect.engines.workers: the shared store in instance/engines/, never a user's database);
after a slow query the worker's janitor publishes at its next tick, so the other workers'
pages see it within a fraction of a second. `recent_for(path)` merges this process's own
list (current) with what the other workers published.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import OrderedDict, deque
from typing import Any

from dbselect.conf import get_config
from dbselect.engines import observe

logger = logging.getLogger("nukeworks.slow_query")

MAX_SQL = 2000
MAX_DATABASES = 200

_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
_SPACES = re.compile(r"\s+")

_lock = threading.Lock()
# path -> its newest slow queries in this process, least recently slow database first.
_recent: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
_changed = False


def elide(sql: str) -> str:
    """Return `sql` with every parameter and string literal elided, on one line, cut short."""
    text = _STRING_LITERAL.sub("'?'", sql)
    text = _SPACES.sub(" ", text.replace("%s", "?")).strip()
    return text if len(text) <= MAX_SQL else text[: MAX_SQL - 1] + "…"


def record(alias: str, sql: str, many: bool, seconds: float) -> dict[str, Any]:
    """Log one slow statement, keep it among the recent ones, announce it; return the entry."""
    global _changed
    from dbselect import signals

    path = observe.database_path(alias)
    request_path, user = observe.request_context()
    entry = {
        "at": time.time(),
        "database": observe.database_label(alias),
        "alias": alias,
        "db_path": path,
        "duration_ms": round(seconds * 1000.0, 3),
        "sql": elide(sql),
        "many": bool(many),
        "request_path": request_path,
        "user": user,
        "pid": os.getpid(),
    }
    logger.warning(
        "slow query on %s (%s): %.1f ms%s request=%s user=%s sql=%s",
        entry["database"],
        path,
        entry["duration_ms"],
        " (executemany)" if many else "",
        request_path or "-",
        user or "-",
        entry["sql"],
        extra={"event": "slow_query", **entry},
    )
    keep = max(int(get_config()["SLOW_QUERY_KEEP"]), 1)
    key = path or alias
    with _lock:
        recent = _recent.get(key)
        if recent is None or recent.maxlen != keep:
            recent = _recent[key] = deque(recent or (), maxlen=keep)
        recent.append(entry)
        _recent.move_to_end(key)
        while len(_recent) > MAX_DATABASES:
            _recent.popitem(last=False)
        _changed = True
    signals.slow_query.send(sender=record, alias=alias, label=entry["database"], seconds=seconds)
    return entry


def recent(path: str | None = None) -> list[dict[str, Any]]:
    """Return this process's recent slow queries (of `path` only, if given), newest first."""
    with _lock:
        if path is not None:
            items = list(_recent.get(path, ()))
        else:
            items = [e for entries in _recent.values() for e in entries]
    return sorted(items, key=lambda e: e["at"], reverse=True)


def published() -> dict[str, list[dict[str, Any]]]:
    """Return path -> recent slow queries, as this worker publishes them to the store."""
    with _lock:
        return {path: list(entries) for path, entries in _recent.items()}


def take_changed() -> bool:
    """Return True once after new slow queries were recorded (the janitor then publishes)."""
    global _changed
    with _lock:
        changed, _changed = _changed, False
    return changed


def clear() -> None:
    """Forget this process's recent slow queries (tests)."""
    global _changed
    with _lock:
        _recent.clear()
        _changed = False


def merge(lists: list[list[dict[str, Any]]], limit: int | None = None) -> list[dict[str, Any]]:
    """Merge recent lists of several workers: newest first, each entry once, `limit` at most."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for entry in sorted((e for items in lists for e in items), key=lambda e: -e["at"]):
        key = (entry.get("pid"), entry["at"], entry["sql"])
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out if limit is None else out[:limit]


def recent_for(path: str) -> list[dict[str, Any]]:
    """Return the recent slow queries of the database at `path` in every worker, newest first.

    This process's own list as it is now; the other workers' as they last published them.
    """
    from dbselect.engines import workers

    lists = [recent(path)]
    try:
        reports = workers.get_store().reports(newer_than=time.time() - workers.stale_after())
    except Exception:  # the store unreadable: this worker's own list still answers
        reports = []
    me = workers.worker_id()
    for report in reports:
        if report.worker != me:
            lists.append(list(report.data.get("slow_queries", {}).get(path, [])))
    keep = max(int(get_config()["SLOW_QUERY_KEEP"]), 1)
    return merge(lists, limit=keep * max(len(lists), 1))
