"""Signals other apps listen to, so that dbselect never reaches into their internals."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.dispatch import Signal

# Sent whenever a session starts working on another database file, or on the same file after
# its content was replaced. Arguments: request, path, alias, display_name, reason: "selected",
# "fallback", "restored" (a snapshot was restored into it) or "cleared" (path and alias None).
database_switched = Signal()

# Sent after a statement at or over the slow-query threshold (dbselect.engines.slow_queries).
# Arguments: alias, label (the database's name in logs and metrics), seconds.
slow_query = Signal()

# Sent when a long operation on one database ends (snapshots, restores, migrations), by the
# functions decorated with `timed`. Arguments: kind (e.g. "snapshot.create"), path (the
# database file), seconds, outcome ("ok" or "failed").
operation_finished = Signal()

F = TypeVar("F", bound=Callable[..., Any])


def timed(kind: str) -> Callable[[F], F]:
    """Decorate a function whose first argument is a database path: send operation_finished.

    The services of snapshots and migrating use it, so whoever measures them (the metrics
    app) listens here and none of them imports it.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            outcome = "failed"
            try:
                result = func(path, *args, **kwargs)
                outcome = "ok"
                return result
            finally:
                operation_finished.send(
                    sender=kind,
                    kind=kind,
                    path=str(path),
                    seconds=time.perf_counter() - start,
                    outcome=outcome,
                )

        return wrapper  # type: ignore[return-value]

    return decorate
