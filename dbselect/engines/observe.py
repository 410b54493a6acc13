"""Every query of every Django connection, observed: timing, per-request tallies, settings.

One `QueryObserver` per Django connection object, added to its `execute_wrappers` from the
`connection_created` signal (like dbselect.engines.query_budget), so runtime aliases get it
as soon as they connect, and only once per connection object (the wrapper list outlives
reconnects). Per statement it costs a `perf_counter()` pair and a comparison with the
slow-query threshold; a statement at or over it goes to `dbselect.engines.slow_queries` (the
log line, the recent list). What it measures is what every execute wrapper sees: the
statement until its first row; rows fetched later (Django reads them in chunks) are not
counted.

When a project asks for tallies (`enable_tally()`, the metrics app does at start-up), each
observer also counts its statements and their seconds until the request ends; the owner
thread collects them with `drain()`. A connection object belongs to one thread, so none of
this takes a lock.

Also here, for the engines page: the connection settings actually in force per alias, read
with PRAGMAs on the first connection of each alias in this process (`settings_in_force`), and
the name a database gets in logs and metrics (`database_label`: its catalog label, else its
alias, never the path of a file a user typed).
"""

from __future__ import annotations

import math
import os
import threading
import time
from time import perf_counter
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils.functional import LazyObject, empty

from dbselect.conf import SYNCHRONOUS_MODES, get_config
from dbselect.layout import catalog_label

OBSERVER_ATTR = "_nukeworks_query_observer"

# Seconds at or over which a statement is slow; infinity when the log is off. Module globals
# read by every statement: `configure()` sets them from DBSELECT.
_threshold = 1.0
_log_on = True
_tally_on = False

_local = threading.local()
_in_force: dict[str, dict[str, Any]] = {}
# alias -> the settings dict the values of _in_force were read under (replaced: read again).
_in_force_of: dict[str, dict[str, Any]] = {}
_labels: dict[str, str] = {}


class QueryObserver:
    """The execute wrapper of one connection object (one thread's connection to one alias)."""

    __slots__ = ("alias", "pending", "queries", "seconds")

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.queries = 0
        self.seconds = 0.0
        self.pending = False

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = perf_counter() - start
            if elapsed >= _threshold:
                _slow(self.alias, sql, many, elapsed)
            if _tally_on:
                self.queries += 1
                self.seconds += elapsed
                if not self.pending:
                    self.pending = True
                    _pending().append(self)


def _slow(alias: str, sql: str, many: bool, elapsed: float) -> None:
    # Never let the log break the query it reports.
    try:
        from dbselect.engines import slow_queries

        slow_queries.record(alias, sql, many, elapsed)
    except Exception:  # pragma: no cover - defensive
        import logging

        logging.getLogger("nukeworks.slow_query").exception("slow-query log failed")


def _pending() -> list[QueryObserver]:
    pending = getattr(_local, "pending", None)
    if pending is None:
        pending = _local.pending = []
    return pending


def configure() -> None:
    """Read the threshold from DBSELECT (start-up, and whenever the setting changes)."""
    global _threshold, _log_on
    ms = float(get_config()["SLOW_QUERY_MS"])
    _log_on = ms >= 0
    _threshold = ms / 1000.0 if _log_on else math.inf
    _labels.clear()


def threshold_ms() -> float | None:
    """Return the slow-query threshold in milliseconds (None: the log is off)."""
    return _threshold * 1000.0 if _log_on else None


def enable_tally(on: bool = True) -> None:
    """Count every statement per connection until `drain()` (the metrics app turns it on)."""
    global _tally_on
    _tally_on = on


def tally_enabled() -> bool:
    return _tally_on


def drain() -> list[tuple[str, int, float]]:
    """Return (alias, statements, seconds) counted in this thread since the last call."""
    pending = getattr(_local, "pending", None)
    if not pending:
        return []
    out = []
    for observer in pending:
        out.append((observer.alias, observer.queries, observer.seconds))
        observer.queries = 0
        observer.seconds = 0.0
        observer.pending = False
    pending.clear()
    return out


def on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """Give a new connection its observer (once per connection object) and note its settings."""
    if connection.vendor == "sqlite" and _in_force_of.get(connection.alias) is not (
        connection.settings_dict
    ):
        _note_settings(connection)
    if (_log_on or _tally_on) and getattr(connection, OBSERVER_ATTR, None) is None:
        observer = QueryObserver(connection.alias)
        setattr(connection, OBSERVER_ATTR, observer)
        # First in the list: the outermost wrapper, so it times the others too.
        connection.execute_wrappers.insert(0, observer)


# -- the request a statement runs for (the log line names its path and user) ---------------


def begin_request(request: Any) -> None:
    """Remember the request this thread serves (dbselect's middleware, at its start)."""
    _local.request = request


def end_request() -> None:
    """Forget it (at the end of the request)."""
    _local.request = None


def request_context() -> tuple[str, str]:
    """Return (request path, username) of the request this thread serves, ("", "") if none.

    The user is named only when it is already loaded: reading a lazy `request.user` here
    would run a query inside the observer of another.
    """
    request = getattr(_local, "request", None)
    if request is None:
        return "", ""
    user = request.__dict__.get("user")
    if isinstance(user, LazyObject):
        wrapped = user.__dict__.get("_wrapped", empty)
        user = None if wrapped is empty else wrapped
    username = ""
    if user is not None and getattr(user, "is_authenticated", False):
        username = str(getattr(user, "username", "") or "")
    return str(getattr(request, "path", "")), username


# -- labels ----------------------------------------------------------------------------------


def database_path(alias: str) -> str:
    """Return the file of `alias` ("" when unknown)."""
    return str(connections.settings.get(alias, {}).get("NAME") or "")


def database_label(alias: str | None) -> str:
    """Return the name of `alias` in logs and metrics: its catalog label, else the alias.

    Never the path of a file a user typed: the alias of such a file is derived from its path
    (`nw_` + a hash), so it names the file without showing it.
    """
    if not alias:
        return "none"
    label = _labels.get(alias)
    if label is None:
        label = _labels[alias] = label_of(alias, database_path(alias))
    return label


def label_of(alias: str, path: str | None) -> str:
    """Return the label of the database `alias` opens at `path` (see database_label)."""
    return (catalog_label(path) if path else None) or alias


def label_for_path(path: str) -> str:
    """Return the label of a database file (its catalog label, else its engine's alias)."""
    from dbselect import engines

    engine = engines.get(path)
    alias = engine.alias if engine is not None else engines.alias_for_path(os.path.realpath(path))
    return label_of(alias, path)


# -- connection settings in force ------------------------------------------------------------


def _note_settings(connection: BaseDatabaseWrapper) -> None:
    """Read the settings SQLite applies on this connection (once per alias and process)."""
    raw = connection.connection
    try:
        journal = str(raw.execute("PRAGMA journal_mode").fetchone()[0]).upper()
        sync = int(raw.execute("PRAGMA synchronous").fetchone()[0])
        busy = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
    except Exception:  # an unusual connection: the configured values are shown instead
        return
    _in_force[connection.alias] = {
        "journal_mode": journal,
        "synchronous": SYNCHRONOUS_MODES[sync] if 0 <= sync < len(SYNCHRONOUS_MODES) else str(sync),
        "busy_timeout_ms": busy,
        "observed": time.time(),
    }
    _in_force_of[connection.alias] = connection.settings_dict


def _configured(cfg: dict[str, Any]) -> dict[str, Any]:
    options = cfg.get("OPTIONS") or {}
    pragmas: dict[str, str] = {}
    for part in str(options.get("init_command") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name.upper().startswith("PRAGMA ") and value:
            pragmas[name[7:].strip().lower()] = value.strip().upper()
    timeout = options.get("timeout")
    return {
        "journal_mode": pragmas.get("journal_mode", ""),
        "synchronous": pragmas.get("synchronous", ""),
        "busy_timeout_ms": int(float(timeout) * 1000) if timeout is not None else None,
    }


def settings_in_force(alias: str) -> dict[str, Any]:
    """Return journal mode, synchronous, busy timeout, CONN_MAX_AGE and per-thread cap.

    Journal, synchronous and busy timeout as SQLite reported them on this process's first
    connection to the alias (`observed` is its time), else as configured (`observed` None).
    """
    cfg = connections.settings.get(alias, {})
    seen = _in_force.get(alias) if _in_force_of.get(alias) is cfg else None
    values = dict(seen) if seen is not None else {**_configured(cfg), "observed": None}
    max_age = cfg.get("CONN_MAX_AGE", 0)
    values["conn_max_age"] = max_age
    # dbselect.engines.connections: a request's thread never holds more than this many.
    values["per_thread_cap"] = max(int(get_config()["MAX_CONNECTIONS_PER_THREAD"]), 1)
    return values
