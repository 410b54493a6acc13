"""Gunicorn settings for `make run` (and the benchmarks), overridable by environment.

Read through the same layers as Django's settings (process environment > .env >
.env.<NUKEWORKS_ENV> > defaults; nukeworks/deployment/environments.py), so a value in
.env.production reaches gunicorn too. With NUKEWORKS_LOG_FORMAT=json (production's default)
gunicorn's own error and access lines are JSON objects as well, an access line carrying the
request's id (its X-Request-ID response header).
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from nukeworks.deployment import environments, logs  # noqa: E402

_env = environments.LayeredEnv(environments.Layers(_ROOT))
_server = environments.server_settings(_env)

bind = _server["NUKEWORKS_BIND"]
worker_class = "gthread"
workers = _server["NUKEWORKS_WORKERS"]
threads = _server["NUKEWORKS_THREADS"]
wsgi_app = "nukeworks.wsgi:application"
timeout = _server["NUKEWORKS_TIMEOUT"]
graceful_timeout = 20
# An empty NUKEWORKS_ACCESS_LOG turns the access log off (tests, benchmarks).
accesslog = _server["NUKEWORKS_ACCESS_LOG"] or None
errorlog = "-"
forwarded_allow_ips = _server["FORWARDED_ALLOW_IPS"]
# Each worker loads the application itself: per-process engine caches, no shared sockets
# to SQLite inherited across fork.
preload_app = False

_log_format = _env.str("NUKEWORKS_LOG_FORMAT", default="plain")
logconfig_dict = logs.gunicorn_logging(_log_format, accesslog) or {}

# Prometheus metrics (metrics/): every worker writes its values to its own files under
# PROMETHEUS_MULTIPROC_DIR, which must be set before the workers import prometheus-client
# (here: instance/metrics/ unless the environment gave one, as nukeworks/serve.sh does).
from metrics import multiprocess as _metrics  # noqa: E402

_metrics_dir, _metrics_dir_ours = _metrics.choose()


def on_starting(server):
    """Counters start from zero: a folder chosen here is emptied, a given one pruned."""
    _metrics.prepare(_metrics_dir, wipe=_metrics_dir_ours)
