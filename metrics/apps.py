from __future__ import annotations

import os

from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "metrics"
    verbose_name = "Prometheus metrics"

    def ready(self) -> None:
        from dbselect import signals
        from dbselect.engines import observe

        # checks register themselves on import.
        from metrics import checks, conf, instruments  # noqa: F401

        if not conf.enabled():
            return
        folder = conf.multiprocess_dir()
        if folder:
            os.makedirs(folder, exist_ok=True)
        # Each connection's observer counts its statements; the middleware collects them.
        observe.enable_tally(True)
        signals.slow_query.connect(instruments.on_slow_query, dispatch_uid="nw-metrics-slow")
        signals.operation_finished.connect(
            instruments.on_operation_finished, dispatch_uid="nw-metrics-operations"
        )
        instruments.connect_huey()
