"""Every SQLite connection of NukeWorks distrusts the file it opens.

A database file carries code of its own: triggers run inside NukeWorks' writes, views inside
queries that name them. Selecting a hostile file must not freeze a worker, so every Django
connection to a SQLite file, as soon as it is created:

- runs with `PRAGMA trusted_schema=OFF` (set in the connection options' init_command, see
  `dbselect.engines.cache.connection_options`): SQL functions that are not marked innocuous, such
  as Django's Python `regexp()`, cannot be called from a trigger or a view at all, and Python
  code that SQLite cannot interrupt never runs on the file's behalf;
- gets a time budget per query (`DBSELECT["QUERY_TIME_LIMIT"]` seconds, executing and
  fetching): SQLite calls a progress handler every few thousand virtual-machine steps, which
  ends the statement with SQLITE_INTERRUPT once the budget is spent; dbselect.recovery answers
  that with a 503 page, and SQLite rolls the statement's transaction back.

Operator work that may legitimately run long (migrations) runs inside `unlimited()`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from dbselect.conf import get_config

# SQLite virtual-machine steps between two looks at the clock (about 0.1 ms of work).
PROGRESS_STEPS = 10_000
_NO_DEADLINE = float("inf")

_local = threading.local()
_budgets: weakref.WeakKeyDictionary[BaseDatabaseWrapper, QueryBudget] = weakref.WeakKeyDictionary()
_budgets_lock = threading.Lock()


def time_limit() -> float:
    """Return the seconds one query may run (0 or less: no limit)."""
    return float(get_config()["QUERY_TIME_LIMIT"])


@contextlib.contextmanager
def unlimited() -> Iterator[None]:
    """Run the queries of this thread without a time budget (migrations, operator commands)."""
    previous = getattr(_local, "unlimited", False)
    _local.unlimited = True
    try:
        yield
    finally:
        _local.unlimited = previous


class QueryBudget:
    """The deadline of the statement a connection is running, and the hooks that enforce it."""

    def __init__(self) -> None:
        self.deadline = _NO_DEADLINE

    def expired(self) -> int:
        """SQLite's progress handler: a non-zero answer interrupts the statement."""
        return int(time.monotonic() > self.deadline)

    def wrap(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any):
        """Django execute wrapper: start the budget of the statement about to run.

        The deadline is not cleared when `execute` returns: rows fetched afterwards are read by
        the same statement and count against the same budget. The next statement sets a new one.
        """
        limit = time_limit()
        if limit > 0 and not getattr(_local, "unlimited", False):
            self.deadline = time.monotonic() + limit
        else:
            self.deadline = _NO_DEADLINE
        return execute(sql, params, many, context)


def on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """Give a new SQLite connection its time budget (see the module docstring)."""
    if connection.vendor != "sqlite":
        return
    with _budgets_lock:
        budget = _budgets.get(connection)
        if budget is None:
            budget = QueryBudget()
            _budgets[connection] = budget
            # The wrapper list belongs to the connection object, which outlives reconnects:
            # added once, it serves every later raw connection of this object.
            connection.execute_wrappers.append(budget.wrap)
    budget.deadline = _NO_DEADLINE
    connection.connection.set_progress_handler(budget.expired, PROGRESS_STEPS)
