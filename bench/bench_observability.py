"""Benchmark: what the slow-query wrapper and the Prometheus metrics cost a request.

Two gunicorn servers with `make run`'s configuration (nukeworks/gunicorn.conf.py: 2 workers x
4 gthread threads, CONN_MAX_AGE=0), side by side in this run, pinned to CPU 0 (wrk, one
thread, on CPU 1):

- **on**: the shipped defaults: every connection has its query observer (a perf_counter pair
  and a comparison per statement against NUKEWORKS_SLOW_QUERY_MS=1000, plus the per-request
  tallies the metrics need), MetricsMiddleware first in the stack, prometheus-client in
  multiprocess mode (each worker writes its values to its files in instance/metrics/);
- **off**: NUKEWORKS_SLOW_QUERY_MS=-1 and NUKEWORKS_METRICS=false: no observer is installed,
  the middleware is not loaded (MiddlewareNotUsed), no tallies.

Both read the same database file and the same session file (same SECRET_KEY, the off
server's SESSION_FILE_PATH is the on server's folder) with the same cookie, so they send the
same company list (50 rows; checked: identical bytes but CSRF tokens, no session write). wrk
drives them in alternating rounds (A B / B A) after a warm-up of each; the figure is the
median over rounds of on/off requests/s (goal >= 0.97), with the range of the pairs, and the
server CPU per request of both.

Requests/s moves with whatever else the 2-core machine runs, so part 2 measures the CPU per
request of both configurations in ONE process (bench/observability_cpu_probe.py: the same
session and page, alternated rounds, the serving thread's CPU): the difference is what the
observer and the metrics add to a request.

Run: `.venv/bin/python bench/bench_observability.py` (part of `make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_routing import (  # noqa: E402
    check_page,
    cpu_plan,
    ensure_wrk,
    make_bench_database,
    run_wrk,
    server_cpu_seconds,
    setup_django,
    signed_in,
)
from tests.live import GunicornServer  # noqa: E402

PAGE = "/companies/"
OFF = {"NUKEWORKS_SLOW_QUERY_MS": "-1", "NUKEWORKS_METRICS": "false"}
ON = {
    "NUKEWORKS_SLOW_QUERY_MS": "1000",
    "NUKEWORKS_METRICS": "true",
    # Only for the check that /metrics answers; no request of the load goes there.
    "NUKEWORKS_METRICS_ALLOW": "127.0.0.1",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=8, help="wrk runs per configuration")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--cpu-rounds", type=int, default=30, help="CPU probe: rounds")
    parser.add_argument("--cpu-requests", type=int, default=40, help="CPU probe: requests/round")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("NUKEWORKS_WORKERS", 2)))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("NUKEWORKS_THREADS", 4)))
    args = parser.parse_args()

    wrk = ensure_wrk()
    server_cpus, client_cpus, fairness = cpu_plan()
    print(
        f"gunicorn: nukeworks/gunicorn.conf.py (workers={args.workers}, threads={args.threads}, "
        f"gthread, CONN_MAX_AGE=0), access log off; {fairness}; wrk -t1 -c{args.connections}"
    )
    kw = {"workers": args.workers, "threads": args.threads, "cpus": server_cpus}
    work = Path(tempfile.mkdtemp(prefix="nukeworks-bench-observability-"))
    try:
        on = GunicornServer(work / "on", env=ON, **kw)
        setup_django(on)
        db = work / "databases" / "bench" / "nukeworks.sqlite"
        make_bench_database(db)
        on.start()
        off = GunicornServer(
            work / "off", env={**OFF, "SESSION_FILE_PATH": str(on.root / "sessions")}, **kw
        ).start()
        servers = {"on": on, "off": off}
        try:
            cookie = f"sessionid={signed_in(on, db).cookie('sessionid')}"
            # The first page stores the file's fingerprint in the session; none writes it after.
            check_page(on, cookie, "/", None, session_write_ok=True)
            bodies = {name: check_page(s, cookie, PAGE, 50) for name, s in servers.items()}
            if bodies["on"] != bodies["off"]:
                raise SystemExit("the two servers send different pages (unfair)")
            if not _metrics_answer(on) or _metrics_answer(off):
                raise SystemExit("metrics are not on (only) where they should be")
            for server in servers.values():  # warm-up: imports, templates, every thread
                run_wrk(
                    wrk,
                    server.base + PAGE,
                    cookie,
                    duration=2,
                    connections=args.connections,
                    cpus=client_cpus,
                )
            runs: dict[str, list[dict]] = {"on": [], "off": []}
            for round_no in range(args.rounds):
                order = ["off", "on"] if round_no % 2 == 0 else ["on", "off"]
                for name in order:
                    before = server_cpu_seconds(servers[name])
                    r = run_wrk(
                        wrk,
                        servers[name].base + PAGE,
                        cookie,
                        duration=args.duration,
                        connections=args.connections,
                        cpus=client_cpus,
                    )
                    cpu = server_cpu_seconds(servers[name]) - before
                    r["server_cpu_ms_per_request"] = cpu * 1000 / max(r["requests"], 1)
                    if r["non_2xx"] or r["socket_errors"]:
                        raise SystemExit(f"{name}: errors {r}")
                    runs[name].append(r)
        finally:
            off.stop()
            on.stop()
        pairs = list(zip(runs["on"], runs["off"], strict=True))
        ratios = [a["rps"] / b["rps"] for a, b in pairs]
        summary = {
            name: {
                key: statistics.median(r[key] for r in rs)
                for key in ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_request")
            }
            for name, rs in runs.items()
        }
        summary["ratio_rps"] = statistics.median(ratios)
        summary["ratio_rps_range"] = (min(ratios), max(ratios))
        summary["ratio_cpu"] = statistics.median(
            a["server_cpu_ms_per_request"] / b["server_cpu_ms_per_request"] for a, b in pairs
        )
        summary["runs"] = runs
        summary["fairness"] = fairness
        probe = [
            sys.executable,
            str(ROOT / "bench" / "observability_cpu_probe.py"),
            str(db),
            str(work / "cpu-probe"),
            "--rounds",
            str(args.cpu_rounds),
            "--requests",
            str(args.cpu_requests),
        ]
        out = subprocess.run(probe, capture_output=True, text=True, check=True, cwd=ROOT).stdout
        summary["cpu_probe"] = cpu = json.loads(out.strip().splitlines()[-1])
        print(
            f"\ncompany list ({PAGE}, 50 rows), medians of {args.rounds} alternated rounds x "
            f"{args.duration:g} s (same database file, same session, identical pages):"
        )
        for name, label in (("off", "off (no observer, no metrics)"), ("on", "on (defaults)")):
            s = summary[name]
            print(
                f"  {label:31s} {s['rps']:8.1f} req/s   p50 {s['p50_ms']:6.2f} ms   "
                f"p99 {s['p99_ms']:6.2f} ms   server CPU {s['server_cpu_ms_per_request']:.2f} "
                "ms/request"
            )
        print(
            f"  on/off requests/s: x{summary['ratio_rps']:.3f} (pairs x{min(ratios):.3f}.."
            f"x{max(ratios):.3f}; goal >= 0.97), server CPU per request "
            f"x{summary['ratio_cpu']:.3f}"
        )
        q1, _, q3 = cpu["diff_ms_quartiles"]
        print(
            f"\nCPU per request in one process (the serving thread, median of {cpu['rounds']} "
            f"alternated rounds x {cpu['requests_per_round']} requests): on "
            f"{cpu['ms']['on']:.3f} ms, off {cpu['ms']['off']:.3f} ms: {cpu['diff_ms']:+.3f} ms "
            f"(quartiles {q1:+.3f}..{q3:+.3f}), x{cpu['ratio']:.3f}"
        )
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "observability.json").write_text(json.dumps(summary, indent=2, default=str))
        print(f"results: {out / 'observability.json'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _metrics_answer(server: GunicornServer) -> bool:
    """Return True when /metrics answers (the allow-list lets the loopback in)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(server.base + "/metrics", timeout=10) as response:
            return response.status == 200 and b"nukeworks_http_requests_total" in response.read()
    except urllib.error.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
