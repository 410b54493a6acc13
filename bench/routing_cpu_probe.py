"""Helper of bench_routing.py: CPU time per request of one configuration, in one process.

Run as `python bench/routing_cpu_probe.py static|selected DB WORKDIR N`: serves N requests of
each page through Django's request handler (the test client, no network, no other process
in the measurement) and prints {page: CPU milliseconds per request} as JSON. Unlike
requests/s on a shared machine, CPU time per request hardly moves with other work.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGES = {"company list (50 rows)": "/companies/", "home": "/"}


def main() -> int:
    mode, db, work, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    os.environ.update(
        SECRET_KEY="bench-cpu-probe-secret-key-0123456789-0123456789",
        SESSION_FILE_PATH=str(work / "sessions"),
        NUKEWORKS_INSTANCE_DIR=str(work / "instance"),
        NUKEWORKS_DATABASES_DIR=str(work / "databases"),
        DBSELECT_REGISTER_SCANNED="false",
        LOG_LEVEL="WARNING",
        BENCH_STATIC_DB=db,
        ALLOWED_HOSTS="testserver",
        DJANGO_SETTINGS_MODULE=(
            "bench.static_settings" if mode == "static" else "nukeworks.settings"
        ),
    )
    warnings.simplefilter("ignore")  # no collected static files in the probe's folders
    import django

    django.setup()
    from django.db import connections
    from django.test import Client

    from bench.bench_routing import PASSWORD

    client = Client()
    if mode == "selected":
        client.post("/select-db", {"path": db})
    client.post("/login/", {"username": "bench", "password": PASSWORD})
    result = {}
    for page, path in PAGES.items():

        def serve(n: int, path: str = path) -> None:
            for _ in range(n):
                if client.get(path).status_code != 200:
                    raise SystemExit(f"{path} did not answer 200")
                connections.close_all()  # CONN_MAX_AGE=0, as under gunicorn

        serve(30)
        started = time.process_time()
        serve(count)
        result[page] = (time.process_time() - started) * 1000 / count
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
