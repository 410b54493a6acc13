"""The API's cost: a token's list on a named database vs the same list on a static site.

1. **Routed vs static, requests/s.** Two gunicorn servers with the `make run` configuration
   (2 workers x 4 threads, pinned to CPU 0; wrk with one thread on CPU 1), each on its own
   copy of one database with COMPANIES companies and a token:
   - routed: GET /api/v1/databases/bench/companies/ (the URL names the database: binding,
     engine cache, token looked up in that file);
   - static: GET /api/v1/static/companies/ (bench/static_api.py: the same DRF view,
     serializer, keyset pagination, knox token and throttles on a plain one-database site).
   wrk runs them in alternating rounds (ABAB…), the figure is the ratio of the medians.
2. **A list of 1,000,000 companies, server time.** In one process through Django's full
   middleware stack (test client, real file, token): the first page, a page deep in the
   table (by cursor), and a name-ordered page; median of 30 requests each. Keyset pagination
   and no COUNT(*) keep each an index range scan.

Run: `.venv/bin/python bench/bench_api.py` (part of `make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.live import GunicornServer, set_password  # noqa: E402

PASSWORD = "pw-bench-123"
COMPANIES = 10_000
BIG = 1_000_000


def ensure_wrk() -> str:
    """Return the path of wrk, installing Debian's package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def cpus() -> tuple[set[int] | None, set[int] | None]:
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return {available[0]}, {available[1]}


def wrk_rps(wrk: str, url: str, token: str, duration: float, cpu: set[int] | None) -> float:
    """Run wrk (1 thread, 8 connections) with the token; return requests/s (2xx only)."""
    out = subprocess.run(
        [wrk, "-t1", "-c8", f"-d{duration:g}s", "-H", f"Authorization: Token {token}", url],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpu)) if cpu else None,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors on {url}:\n{out}")
    return float(out.split("Requests/sec:")[1].split()[0])


def make_database(path: Path, companies: int) -> None:
    """A migrated database with `companies` companies and a staff user `bench`."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    from dbselect import engines, state

    path.parent.mkdir(parents=True, exist_ok=True)
    engines.create_file(str(path))
    engine = engines.register(str(path))
    with state.override(engine.alias):
        call_command("migrate", database=engine.alias, verbosity=0, interactive=False)
        get_user_model().objects.create_user("bench", password=PASSWORD, is_staff=True)
    connections[engine.alias].close()
    engines.dispose(str(path))
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO companies_company (name, is_vendor, is_owner, is_operator, "
            "is_constructor, country, website, notes, created_at, updated_at) "
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
            "SELECT printf('Company %07d', x), 0, 1, 0, 0, 'Benchland', '', 'notes', "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM c",
            (companies,),
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    set_password(path, "bench", PASSWORD)


def token_of(base: str, label: str) -> str:
    request = urllib.request.Request(
        f"{base}/api/v1/databases/{label}/auth/token",
        data=json.dumps({"username": "bench", "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["token"]


def routed_vs_static(work: Path, source: Path, rounds: int, duration: float) -> dict:
    wrk = ensure_wrk()
    server_cpu, client_cpu = cpus()
    limits = {"API_THROTTLE_TOKEN": "1000000000/min", "API_THROTTLE_ANON": "1000000000/min"}
    routed_db = work / "routed" / "databases" / "bench" / "nukeworks.sqlite"
    routed_db.parent.mkdir(parents=True)
    shutil.copyfile(source, routed_db)
    routed = GunicornServer(work / "routed", workers=2, threads=4, env=limits, cpus=server_cpu)
    routed.start()
    try:
        # The token is made through the API and lives in the file; the static copy is taken
        # afterwards, so both servers accept the same token.
        token = token_of(routed.base, "bench")
        static_db = work / "static.sqlite"
        check = sqlite3.connect(routed_db)
        check.execute("PRAGMA wal_checkpoint(FULL)")
        check.close()
        shutil.copyfile(routed_db, static_db)
        static = GunicornServer(
            work / "static",
            workers=2,
            threads=4,
            settings_module="bench.static_api_settings",
            env={**limits, "BENCH_STATIC_DB": str(static_db)},
            cpus=server_cpu,
        ).start()
        try:
            urls = {
                "routed": f"{routed.base}/api/v1/databases/bench/companies/",
                "static": f"{static.base}/api/v1/static/companies/",
            }
            for url in urls.values():  # warm both: every worker, connections, caches
                wrk_rps(wrk, url, token, 2, client_cpu)
            figures: dict[str, list[float]] = {"routed": [], "static": []}
            for i in range(rounds):
                order = ("routed", "static") if i % 2 == 0 else ("static", "routed")
                for name in order:
                    figures[name].append(wrk_rps(wrk, urls[name], token, duration, client_cpu))
        finally:
            static.stop()
    finally:
        routed.stop()
    routed_rps = statistics.median(figures["routed"])
    static_rps = statistics.median(figures["static"])
    return {
        "routed_rps": routed_rps,
        "static_rps": static_rps,
        "ratio": routed_rps / static_rps,
        "rounds": figures,
    }


def big_list_server_time(work: Path) -> dict[str, float]:
    """Median ms of list requests on a 1,000,000-company database, in-process."""
    from django.test import Client

    from api.views.tokens import issue_token  # noqa: F401  (the app is loaded)
    from dbselect import engines, state

    databases = Path(os.environ["NUKEWORKS_DATABASES_DIR"])
    path = databases / "big" / "nukeworks.sqlite"
    start = time.perf_counter()
    make_database(path, BIG)
    print(f"  made a database of {BIG:,} companies in {time.perf_counter() - start:.1f} s")
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    engine = engines.register(str(path))
    with state.override(engine.alias):
        user = get_user_model().objects.get(username="bench")
        _, token = AuthToken.objects.create(user=user)
    # A host the project's ALLOWED_HOSTS accepts (the test client's "testserver" is not one).
    client = Client(HTTP_HOST="127.0.0.1", headers={"Authorization": f"Token {token}"})
    base = "/api/v1/databases/big/companies/"
    deep = client.get(base + "?page_size=50").json()
    for _ in range(200):  # walk 10,000 rows in, by cursor
        deep = client.get(deep["next"]).json()
    cases = {
        "first page (50)": base,
        "page 10,000 rows in, by cursor": deep["next"],
        "ordered by name, first page": base + "?ordering=-name",
    }
    results = {}
    for label, url in cases.items():
        timings = []
        for _ in range(30):
            t0 = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.content
        results[label] = statistics.median(timings)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternating wrk rounds")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nw-bench-api-"))
    try:
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
                "NUKEWORKS_INSTANCE_DIR": str(work / "instance"),
                "NUKEWORKS_DATABASES_DIR": str(work / "databases"),
                "NUKEWORKS_DEFAULT_DB": str(work / "default.sqlite"),
                "SESSION_FILE_PATH": str(work / "sessions"),
                "DBSELECT_REGISTER_SCANNED": "false",
                "LOG_LEVEL": "WARNING",
            }
        )
        for folder in ("instance", "databases", "sessions"):
            (work / folder).mkdir()
        import django

        django.setup()
        source = work / "source.sqlite"
        make_database(source, COMPANIES)
        print(f"API company list ({COMPANIES:,} companies, pages of 50, token):")
        figures = routed_vs_static(work, source, args.rounds, args.duration)
        print(
            f"  routed /api/v1/databases/bench/companies/ {figures['routed_rps']:.1f} req/s, "
            f"static {figures['static_rps']:.1f} req/s: ratio x{figures['ratio']:.3f} "
            f"(goal >= 0.9; medians of {args.rounds} alternating rounds)"
        )
        print(
            "  rounds: "
            + json.dumps({k: [round(v, 1) for v in vs] for k, vs in figures["rounds"].items()})
        )
        print(f"API list of {BIG:,} companies, server time (in-process, full middleware):")
        for label, ms in big_list_server_time(work).items():
            print(f"  {label}: {ms:.1f} ms (goal < 50 ms)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
