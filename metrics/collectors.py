"""Gauges read at scrape time: open engines and connections, from the workers' engine tables.

Every worker process publishes its engine table to the shared store (dbselect.engines.workers:
on a heartbeat, when asked and after a slow query); the worker answering the scrape uses its
own table as it is now and the others' as last published (at most ENGINE_HEARTBEAT seconds
old). Nothing is kept per process, so these need no multiprocess files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dbselect.engines import observe
from dbselect.engines import workers as engine_workers


def _tables() -> list[dict[str, Any]]:
    """This process's engine table now, and every other live worker's last published one."""
    tables = [engine_workers.report()]
    try:
        store = engine_workers.get_store()
        reports = store.reports(newer_than=time.time() - engine_workers.stale_after())
    except Exception:  # the store unreadable: this worker's own table still answers
        return tables
    me = engine_workers.worker_id()
    # With REDIS_URL the store holds every server's workers: this server's /metrics counts its
    # own only, or a Prometheus scraping each server would count every worker once per server.
    server = engine_workers.server_name()
    tables.extend(r.data for r in reports if r.worker != me and r.host == server)
    return tables


class EngineCollector(Collector):
    """nukeworks_workers, nukeworks_engines_cached, nukeworks_engine_workers{database},
    nukeworks_db_connections_open{database}."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tables = _tables()
        workers_cached: dict[str, int] = {}
        open_connections: dict[str, int] = {}
        for table in tables:
            for row in table.get("engines", []):
                label = observe.label_of(row["alias"], row["path"])
                workers_cached[label] = workers_cached.get(label, 0) + 1
                open_connections[label] = open_connections.get(label, 0) + int(
                    row.get("open_connections", 0)
                )
        yield GaugeMetricFamily(
            "nukeworks_workers", "Server worker processes reporting.", value=len(tables)
        )
        yield GaugeMetricFamily(
            "nukeworks_engines_cached",
            "Database files cached by at least one worker process.",
            value=len(workers_cached),
        )
        cached = GaugeMetricFamily(
            "nukeworks_engine_workers",
            "Worker processes that have the database's engine cached.",
            labels=["database"],
        )
        connections = GaugeMetricFamily(
            "nukeworks_db_connections_open",
            "Open connections to the database, over every worker process and thread.",
            labels=["database"],
        )
        for label in sorted(workers_cached):
            cached.add_metric([label], workers_cached[label])
            connections.add_metric([label], open_connections[label])
        yield cached
        yield connections


class RegistryCollector(Collector):
    """The metrics of this process's registry (single-process mode: tests, runserver)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()
