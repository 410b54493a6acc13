"""Benchmark: per-session routing on a PostgreSQL database vs a static single-PostgreSQL site.

Two gunicorn servers with the `make run` configuration, side by side in the same run, serve
the same PostgreSQL database (60 companies, the list shows 50) on a real PostgreSQL server
from Debian's packages (nukeworks/cluster/services.py, loopback, temporary data folder):

- routed: the project as shipped; the session selected `postgresql:bench`, a catalog entry;
- static: bench/static_pg_settings.py, the same project without dbselect's middleware and
  router, `default` = that database with the same connection settings.

Both read the same session (same SECRET_KEY, the same session folder) and render identical
pages (checked, CSRF tokens aside). The servers are pinned to one core, wrk and PostgreSQL
(whose backends inherit the postmaster's affinity) to the other. Part 1: wrk drives the
company list and the home page in alternated rounds (bench_routing.bench_routing, the method
of the SQLite figures): requests/s, p50/p99, server CPU per request and the paired ratios
routed/static. Part 2: the CPU one request costs, routed vs static, in one process
(routing_cpu_probe.py). Goal: the routed site keeps at least x0.97 of the static one's
requests/s.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_routing import (  # noqa: E402
    bench_cpu,
    bench_routing,
    cpu_plan,
    ensure_wrk,
    migrate_and_fill,
    setup_django,
)
from nukeworks.cluster import services  # noqa: E402
from tests.live import GunicornServer  # noqa: E402

LABEL = "bench"


def make_pg_bench_database(server_url: str) -> str:
    """Create, register, migrate and fill the bench database; return its URL."""
    from dbselect import catalog
    from dbselect.catalog import dsn, postgres

    server = dsn.parse(server_url)
    postgres.create_database(server, "bench")
    url = server.with_dbname("bench").url()
    entry = catalog.add(LABEL, url, "Bench")
    migrate_and_fill(entry.target)
    with postgres.connect(server.with_dbname("bench"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=8, help="wrk runs per configuration")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument(
        "--cpu-rounds", type=int, default=30, help="CPU probe: alternated rounds per page"
    )
    parser.add_argument("--cpu-requests", type=int, default=40, help="CPU probe: requests/round")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("NUKEWORKS_WORKERS", 2)))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("NUKEWORKS_THREADS", 4)))
    args, _ = parser.parse_known_args()

    wrk = ensure_wrk()
    services.ensure_packages(("postgresql",))
    server_cpus, client_cpus, fairness = cpu_plan()
    print(
        f"gunicorn: nukeworks/gunicorn.conf.py (workers={args.workers}, threads={args.threads},"
        f" gthread, CONN_MAX_AGE=0) against PostgreSQL on loopback; {fairness}; "
        f"wrk -t1 -c{args.connections}"
    )
    work = Path(tempfile.mkdtemp(prefix="nukeworks-bench-postgres-"))
    pg = services.start_postgres(work / "postgres", password=secrets.token_hex(12))
    if client_cpus:
        # PostgreSQL forks a backend per connection (one per request at CONN_MAX_AGE=0): on
        # wrk's core, not the servers', so the server core measures gunicorn alone and the
        # backends' CPU does not land on one configuration's rounds more than the other's.
        os.sched_setaffinity(pg.pid(), client_cpus)
    try:
        server_kw = {"workers": args.workers, "threads": args.threads, "cpus": server_cpus}
        # The routed server's folders: this process registers the catalog entry there.
        routed = GunicornServer(work / "selected", **server_kw)
        setup_django(routed)
        url = make_pg_bench_database(pg.extra["url"])
        results = bench_routing(
            args,
            wrk,
            work,
            f"postgresql:{LABEL}",
            server_kw,
            client_cpus,
            static_settings="bench.static_pg_settings",
            static_env={"BENCH_STATIC_PG_URL": url},
            selected_root=routed.root,
        )
        # The CPU one request costs, routed vs static, in ONE process (the method of
        # bench_routing's part 2): requests/s on this busy 2-core machine swing by +-15 %.
        cpu = bench_cpu(args, routed.root, f"postgresql:{LABEL}", {"BENCH_STATIC_PG_URL": url})
        verdicts = {
            page: ("met" if figures["ratio_rps"] >= 0.97 else "NOT met")
            for page, figures in results.items()
        }
        for page, verdict in verdicts.items():
            print(f"goal routed/static >= x0.97 on {page}: {verdict}")
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "postgres.json").write_text(
            json.dumps(
                {"fairness": fairness, "routing": results, "routing_cpu": cpu},
                indent=2,
                default=str,
            )
        )
        print(f"\nresults: {out / 'postgres.json'}")
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
