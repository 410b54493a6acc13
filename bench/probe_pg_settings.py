"""Settings of routing_cpu_probe.py on PostgreSQL: the project's own settings, with `default`
= the bench's PostgreSQL database (env BENCH_STATIC_PG_URL) exactly as the static baseline
(bench/static_pg_settings.py) has it. The routed requests use the catalog entry's alias."""

from bench.static_pg_settings import DATABASES as _STATIC_DATABASES
from nukeworks.settings import *  # noqa: F403

DATABASES = _STATIC_DATABASES
