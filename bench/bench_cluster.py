"""Benchmark: the company list through HAProxy with two app servers vs one app server.

One HAProxy (nukeworks/cluster/services.py, the configuration `make cluster` runs: round
robin, no stickiness, health checks on /readyz) with two frontends side by side in this run:

- **two**: round robin over app servers A and B;
- **one**: app server A alone.

Each app server is gunicorn with the shipped configuration (nukeworks/gunicorn.conf.py: 2
workers x 4 gthread threads, CONN_MAX_AGE=0), so "two" has twice the worker processes. Both
read one SQLite file (the bench database of bench_routing: 60 companies, the list shows 50)
and share one session folder and SECRET_KEY, so one signed-in cookie works on either server
(REDIS_URL is not set: the PostgreSQL and Redis side is bench_postgres's subject). The load
is `wrk` (Debian's package, installed with apt when missing; else a Python load generator)
on the company list through HAProxy, the two frontends in alternating rounds (A B / B A)
after a warm-up of each; the figure is the median over rounds of two/one requests/s.

Nothing is pinned: the app servers, HAProxy and wrk share the machine's cores, as they
would on one host. Per round the script also reads the machine's busy CPU share
(/proc/stat), the app servers' CPU per request and HAProxy's, which say why the ratio is
what it is (printed below the figures).

Run: `.venv/bin/python bench/bench_cluster.py` (part of `make bench`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_routing import (  # noqa: E402
    check_page,
    ensure_wrk,
    make_bench_database,
    run_wrk,
    server_cpu_seconds,
    setup_django,
    signed_in,
)
from nukeworks.cluster import control, services  # noqa: E402
from tests.live import GunicornServer  # noqa: E402

PAGE = "/companies/"
# The bench servers serve pages only: no queue worker runs beside them.
SERVER_ENV = {"NUKEWORKS_READYZ_WORKER": "false"}


def machine_ticks() -> tuple[int, int]:
    """Return (busy, total) CPU ticks of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


def own_client_cpu_seconds() -> float:
    """Return the CPU time of this process and of its finished children (wrk runs)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def process_cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) process `pid` has used."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def python_load(url: str, cookie: str, *, duration: float, connections: int) -> dict:
    """A load generator for when wrk is missing: `connections` threads, keep-alive, GET `url`.

    Returns what run_wrk returns. Slower than wrk (the GIL): it may be the bottleneck.
    """
    parsed = http.client.urlsplit(url)
    path = parsed.path or "/"
    latencies: list[float] = []
    counts = {"ok": 0, "bad": 0, "errors": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def client() -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        mine: list[float] = []
        ok = bad = errors = 0
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Cookie": cookie})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                continue
            mine.append((time.perf_counter() - t0) * 1000)
            if 200 <= response.status < 400:
                ok += 1
            else:
                bad += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            counts["ok"] += ok
            counts["bad"] += bad
            counts["errors"] += errors

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    total = counts["ok"] + counts["bad"]

    def pct(q: float) -> float:
        return latencies[min(int(q * len(latencies)), len(latencies) - 1)] if latencies else 0.0

    return {
        "rps": total / elapsed,
        "requests": total,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "non_2xx": counts["bad"],
        "socket_errors": f"{counts['errors']} errors" if counts["errors"] else "",
    }


def load_generator() -> tuple[object, str]:
    """Return (a function with run_wrk's result, its description): wrk, else Python."""
    try:
        wrk = ensure_wrk()
    except (SystemExit, Exception) as exc:  # apt refused, not root, no network...
        print(f"wrk unavailable ({exc}): using the Python load generator instead")
        return python_load, "Python threads (wrk unavailable; the client may be the limit)"

    def with_wrk(url: str, cookie: str, *, duration: float, connections: int) -> dict:
        return run_wrk(wrk, url, cookie, duration=duration, connections=connections, cpus=None)

    return with_wrk, "wrk -t1"


def main() -> int:
    """Run the benchmark; print the figures and write bench/results/cluster.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=8, help="load runs per configuration")
    parser.add_argument(
        "--connections", type=int, default=16,
        help="concurrent connections (16: as many as the threads of two servers)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=int(os.environ.get("NUKEWORKS_WORKERS", 2)))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("NUKEWORKS_THREADS", 4)))
    args = parser.parse_args()

    try:
        services.ensure_packages(("haproxy",))
    except services.ServiceError as exc:
        print(f"skipped: {exc}")
        return 0
    load, generator = load_generator()
    cores = len(os.sched_getaffinity(0))
    print(
        f"gunicorn: nukeworks/gunicorn.conf.py per app server (workers={args.workers}, "
        f"threads={args.threads}, gthread, CONN_MAX_AGE=0), access log off; HAProxy round "
        f"robin; {generator}, {args.connections} connections; nothing pinned: servers, "
        f"HAProxy and the client share the machine's {cores} cores"
    )
    kw = {"workers": args.workers, "threads": args.threads, "env": SERVER_ENV}
    work = Path(tempfile.mkdtemp(prefix="nukeworks-bench-cluster-"))
    a = GunicornServer(work / "a", **kw)
    b = GunicornServer(
        work / "b", **{**kw, "env": {**SERVER_ENV, "SESSION_FILE_PATH": str(a.root / "sessions")}}
    )
    haproxy = None
    try:
        setup_django(a)
        db = work / "databases" / "bench" / "nukeworks.sqlite"
        make_bench_database(db)
        a.start()
        b.start()
        ports = {"two": services.free_port(), "one": services.free_port()}
        stats_port = services.free_port()
        haproxy = services.start_haproxy(
            work / "haproxy",
            [("A", a.port), ("B", b.port)],
            ports["two"],
            stats_port=stats_port,
            extra_pools=[(ports["one"], [("A", a.port)])],
        )
        stats = haproxy.extra["stats"]
        control.wait_backends_up(stats, "app", 2)
        control.wait_backends_up(stats, "pool2", 1)
        pools = {
            name: types.SimpleNamespace(base=f"http://127.0.0.1:{port}")
            for name, port in ports.items()
        }
        # Selected on one server, signed in on the other: the session is shared.
        cookie = f"sessionid={signed_in(pools['two'], db).cookie('sessionid')}"
        check_page(pools["two"], cookie, "/", None, session_write_ok=True)
        bodies = {name: check_page(pool, cookie, PAGE, 50) for name, pool in pools.items()}
        bodies["two (second)"] = check_page(pools["two"], cookie, PAGE, 50)
        if len(set(bodies.values())) != 1:
            raise SystemExit("the servers send different pages (unfair)")
        for pool in pools.values():  # warm-up: imports, templates, every thread
            load(pool.base + PAGE, cookie, duration=2, connections=args.connections)

        runs: dict[str, list[dict]] = {"one": [], "two": []}
        for round_no in range(args.rounds):
            order = ["one", "two"] if round_no % 2 == 0 else ["two", "one"]
            for name in order:
                busy0, total0 = machine_ticks()
                cpu0 = {"A": server_cpu_seconds(a), "B": server_cpu_seconds(b)}
                proxy0 = process_cpu_seconds(haproxy.pid())
                client0 = own_client_cpu_seconds()
                r = load(pools[name].base + PAGE, cookie, duration=args.duration,
                         connections=args.connections)  # fmt: skip
                busy1, total1 = machine_ticks()
                cpu = {
                    "A": server_cpu_seconds(a) - cpu0["A"],
                    "B": server_cpu_seconds(b) - cpu0["B"],
                }
                if r["non_2xx"] or r["socket_errors"]:
                    raise SystemExit(f"{name}: errors {r}")
                requests = max(r["requests"], 1)
                r["machine_busy"] = (busy1 - busy0) / max(total1 - total0, 1)
                r["app_cpu_ms_per_request"] = (cpu["A"] + cpu["B"]) * 1000 / requests
                r["share_b"] = cpu["B"] / max(cpu["A"] + cpu["B"], 1e-9)
                r["haproxy_cpu_ms_per_request"] = (
                    (process_cpu_seconds(haproxy.pid()) - proxy0) * 1000 / requests
                )
                # Of the machine's busy time, what this benchmark used (servers, HAProxy,
                # client) and what other work on the machine took.
                ticks = os.sysconf("SC_CLK_TCK")
                capacity = (total1 - total0) / ticks  # core-seconds that passed
                ours = (
                    cpu["A"] + cpu["B"] + (process_cpu_seconds(haproxy.pid()) - proxy0)
                    + own_client_cpu_seconds() - client0
                )  # fmt: skip
                r["bench_share"] = ours / max(capacity, 1e-9)
                r["other_share"] = max(r["machine_busy"] - r["bench_share"], 0.0)
                # Requests/s per core the benchmark actually had: other work on the machine
                # takes a varying share, and more processes win more of it from the scheduler.
                r["rps_per_core"] = r["rps"] / max(r["bench_share"] * (os.cpu_count() or 1), 1e-9)
                runs[name].append(r)
    finally:
        if haproxy is not None:
            haproxy.stop()
        b.stop()
        a.stop()
        shutil.rmtree(work, ignore_errors=True)

    keys = ("rps", "p50_ms", "p99_ms", "machine_busy", "app_cpu_ms_per_request",
            "haproxy_cpu_ms_per_request", "share_b", "bench_share", "other_share",
            "rps_per_core")  # fmt: skip
    summary: dict = {
        name: {key: statistics.median(r[key] for r in rs) for key in keys}
        for name, rs in runs.items()
    }
    # The machine's other work drifts slowly: compare each run with its neighbour of the
    # other configuration (same round), then take the median.
    pairs = list(zip(runs["two"], runs["one"], strict=True))
    ratios = [t["rps"] / o["rps"] for t, o in pairs]
    summary["ratio_rps"] = statistics.median(ratios)
    summary["ratio_rps_range"] = (min(ratios), max(ratios))
    summary["ratio_rps_of_medians"] = summary["two"]["rps"] / summary["one"]["rps"]
    summary["ratio_rps_per_core"] = statistics.median(
        t["rps_per_core"] / o["rps_per_core"] for t, o in pairs
    )
    summary["ratio_app_cpu"] = statistics.median(
        t["app_cpu_ms_per_request"] / o["app_cpu_ms_per_request"] for t, o in pairs
    )
    summary.update(runs=runs, cores=cores, generator=generator, connections=args.connections)

    print(
        f"\ncompany list ({PAGE}, 50 rows) through HAProxy, medians of {args.rounds} alternated "
        f"rounds x {args.duration:g} s (same database file, same session, identical pages):"
    )
    labels = {"one": "one app server (A)", "two": "two app servers (A+B)"}
    for name in ("one", "two"):
        s = summary[name]
        print(
            f"  {labels[name]:22s} {s['rps']:8.1f} req/s   p50 {s['p50_ms']:6.2f} ms   "
            f"p99 {s['p99_ms']:7.2f} ms   machine busy {s['machine_busy']:4.0%}   app CPU "
            f"{s['app_cpu_ms_per_request']:.2f} ms/req   HAProxy "
            f"{s['haproxy_cpu_ms_per_request']:.2f} ms/req   B's share {s['share_b']:4.0%}"
            f"   other work {s['other_share']:4.0%}"
        )
    print(
        f"  two/one requests/s: x{summary['ratio_rps']:.3f} (pairs x{min(ratios):.3f}.."
        f"x{max(ratios):.3f}; ratio of the medians x{summary['ratio_rps_of_medians']:.3f}), "
        f"per core the benchmark had x{summary['ratio_rps_per_core']:.3f}, app servers' CPU "
        f"per request x{summary['ratio_app_cpu']:.3f}"
    )
    print("\nwhy: " + explain(summary))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "cluster.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"results: {out / 'cluster.json'}")
    return 0


def explain(summary: dict) -> str:
    """Say from the measured figures why two servers give the ratio they give on this machine."""
    one, two, ratio, cores = summary["one"], summary["two"], summary["ratio_rps"], summary["cores"]
    cpu_one, cpu_two = one["app_cpu_ms_per_request"], two["app_cpu_ms_per_request"]
    text = (
        f"both app servers run on the same {cores} cores as HAProxy and the load generator. "
        f"The machine was {one['machine_busy']:.0%} busy with one server and "
        f"{two['machine_busy']:.0%} with two; this benchmark's processes had "
        f"{one['bench_share']:.0%} and {two['bench_share']:.0%} of it, other work on the "
        f"machine {one['other_share']:.0%} and {two['other_share']:.0%}. "
    )
    if one["machine_busy"] >= 0.85:
        text += (
            "So one server (2 worker processes) plus HAProxy and the client already keep the "
            "cores busy: a second server adds processes, not CPU. "
        )
    else:
        text += (
            "The cores were not saturated, so the limit lay elsewhere (the client, the "
            "connections, SQLite's file locks), which a second server on the same cores does "
            "not lift. "
        )
    text += (
        f"Each request costs the app servers {cpu_one:.2f} ms of CPU with one server and "
        f"{cpu_two:.2f} ms with two (x{summary['ratio_app_cpu']:.2f}; more processes share "
        f"the same caches and cores), HAProxy about {two['haproxy_cpu_ms_per_request']:.2f} "
        f"ms; B took {two['share_b']:.0%} of the app servers' CPU (round robin). "
        f"Hence x{ratio:.2f}: "
    )
    if ratio < 1.05:
        text += "about 1.0 or below, as expected when both servers share one machine's cores. "
    elif two["bench_share"] > one["bench_share"] + 0.02:
        text += (
            "above 1.0 only because twice the processes won a larger share of the cores from "
            f"the other work ({one['bench_share']:.0%} -> {two['bench_share']:.0%} of the "
            f"machine); per core they had, two servers served "
            f"x{summary['ratio_rps_per_core']:.2f} the requests of one, not more. "
        )
    else:
        text += "above 1.0: one server left idle time on the cores that a second one used. "
    text += (
        "On separate hosts each app server brings its own cores, so requests/s is expected "
        "to grow with the number of hosts until the database server, Redis or HAProxy "
        "becomes the limit; with several hosts the databases are PostgreSQL catalog "
        "entries, not SQLite files on a share."
    )
    return text


if __name__ == "__main__":
    sys.exit(main())
