"""Helper of bench_observability.py: the CPU one request costs with observation on vs off,
in ONE process.

Run as `python bench/observability_cpu_probe.py DB WORKDIR [--rounds R] [--requests N]` (DB: a
database made by bench_routing.make_bench_database, with its `bench` user). Prints the figures
as one JSON line on stdout.

The project's settings, prometheus-client in multiprocess mode (PROMETHEUS_MULTIPROC_DIR set
before anything imports it, as gunicorn.conf.py does), CONN_MAX_AGE=0, the company list
served the way gunicorn serves it (bench/routing_cpu_probe.Config: a WSGIHandler, the session
cookie, the response closed, which closes the request's connections and drops their objects):

- on: the project's MIDDLEWARE (MetricsMiddleware first), the slow-query threshold at its
  default (1000 ms) and the per-request tallies on: every new connection gets its observer;
- off: MIDDLEWARE without MetricsMiddleware, the log off and no tallies: new connections get
  no observer (dbselect.engines.observe installs it only when one of them is on).

The same session and page on both sides; R rounds alternate them (A B then B A) after a
warm-up, N requests each, timed with the serving thread's CPU (`time.thread_time`).
Reported: the median ms/request of each, the median per-round difference with its quartiles.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGE = "/companies/"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("work")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(dir=work, prefix="metrics-")

    from bench import routing_cpu_probe as probe

    probe.configure(args.db, work)

    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import router
    from django.test import Client
    from django.test.utils import override_settings

    from bench.bench_routing import PASSWORD
    from dbselect.engines import observe

    routers = list(router.routers)
    on_handler = WSGIHandler()
    without = [m for m in settings.MIDDLEWARE if not m.startswith("metrics.")]
    with override_settings(MIDDLEWARE=without):
        off_handler = WSGIHandler()
    client = Client()
    client.post("/select-db", {"path": args.db})
    if client.post("/login/", {"username": "bench", "password": PASSWORD}).status_code != 302:
        raise SystemExit("sign-in failed")
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    configs = {
        "on": probe.Config("on", on_handler, routers, cookie),
        "off": probe.Config("off", off_handler, routers, cookie),
    }
    configs["on"].get("/")  # the fingerprint stored in the session once

    def switch(name: str) -> None:
        if name == "on":
            observe.configure()  # DBSELECT SLOW_QUERY_MS: 1000 by default
            observe.enable_tally(True)
        else:
            observe._log_on = False
            observe._threshold = float("inf")
            observe.enable_tally(False)

    def serve(name: str, count: int) -> float:
        switch(name)
        ms, writes = configs[name].serve(PAGE, count)
        if writes:
            raise SystemExit(f"{name}: the session was written")
        return ms

    bodies = {}
    for name in configs:
        switch(name)
        status, body, _ = configs[name].get(PAGE)
        bodies[name] = probe.CSRF.sub(b"", body)
        if status != "200 OK" or body.count(b"Company 0") < 50:
            raise SystemExit(f"{name}: {status}")
    if bodies["on"] != bodies["off"]:
        raise SystemExit("the two configurations send different pages")
    for _ in range(probe.WARM):
        for name in ("off", "on"):
            serve(name, args.requests)
    times: dict[str, list[float]] = {"on": [], "off": []}
    for round_no in range(args.rounds):
        for name in ("off", "on") if round_no % 2 == 0 else ("on", "off"):
            times[name].append(serve(name, args.requests))
    diffs = [a - b for a, b in zip(times["on"], times["off"], strict=True)]
    q1, median, q3 = probe.quartiles(diffs)
    result = {
        "ms": {name: statistics.median(values) for name, values in times.items()},
        "diff_ms": median,
        "diff_ms_quartiles": (q1, median, q3),
        "ratio": statistics.median(a / b for a, b in zip(times["on"], times["off"], strict=True)),
        "rounds": args.rounds,
        "requests_per_round": args.requests,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
