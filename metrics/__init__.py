"""Prometheus metrics of NukeWorks, per database (prometheus-client; see metrics.instruments)."""
