"""Gunicorn settings for `make run` (and the benchmarks), overridable by environment."""

import os

bind = os.environ.get("NUKEWORKS_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("NUKEWORKS_WORKERS", "2"))
threads = int(os.environ.get("NUKEWORKS_THREADS", "4"))
wsgi_app = "nukeworks.wsgi:application"
timeout = int(os.environ.get("NUKEWORKS_TIMEOUT", "60"))
graceful_timeout = 20
# An empty NUKEWORKS_ACCESS_LOG turns the access log off (tests, benchmarks).
accesslog = os.environ.get("NUKEWORKS_ACCESS_LOG", "-") or None
errorlog = "-"
# Each worker loads the application itself: per-process engine caches, no shared sockets
# to SQLite inherited across fork.
preload_app = False
