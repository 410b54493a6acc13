"""What Django's per-request connection receivers cost as databases get registered.

Django connects `reset_queries` (request_started) and `close_old_connections` (request_started
and request_finished) to every request. Both walk *every* alias in `connections.databases`
through an asgiref Local, so their cost grows with the number of databases a worker has
served. dbselect.engines.connections replaces them with receivers that walk only the
connections the calling thread opened. This prints both, side by side in the same process,
at 10, 100 and 1,000 registered databases (each call timed over many repetitions; the figure
that matters is the ratio, measured in the same run).

Run: .venv/bin/python bench/bench_request_receivers.py
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nukeworks.settings")

import django

django.setup()

from django.db import close_old_connections, connections, reset_queries  # noqa: E402

from dbselect import engines  # noqa: E402
from dbselect.engines import connections as tracking  # noqa: E402

REPEAT = 2000


def per_call_us(fn: Callable[[], object], repeat: int = REPEAT) -> float:
    """Return the median of 5 timings of `repeat` calls, in microseconds per call."""
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        timings.append((time.perf_counter() - start) / repeat * 1e6)
    return sorted(timings)[2]


def main() -> None:
    folder = tempfile.mkdtemp(prefix="nw-receivers-")
    registered = 0
    print("aliases  django 3 calls/request  ours 3 calls/request  ratio")
    for target in (10, 100, 1000):
        while registered < target:
            path = os.path.join(folder, f"db{registered}.sqlite")
            sqlite3.connect(path).close()
            engines.register(path)
            registered += 1
        # Like a server thread: it has used three of those databases.
        for engine in engines.all()[:3]:
            connections[engine.alias].ensure_connection()
        django_us = 2 * per_call_us(close_old_connections) + per_call_us(reset_queries)
        ours_us = 2 * per_call_us(tracking.close_old_connections_here) + per_call_us(
            tracking.reset_queries_here
        )
        print(
            f"{len(connections.databases):7d}  {django_us:17.1f} us  {ours_us:17.1f} us"
            f"  x{django_us / ours_us:.0f}"
        )
    connections.close_all()


if __name__ == "__main__":
    main()
