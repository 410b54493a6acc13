"""Settings of the static API baseline in bench_api.py: bench/static_settings.py + one URL."""

from bench.static_settings import *  # noqa: F403

ROOT_URLCONF = "bench.static_api"
