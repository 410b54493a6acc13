"""Helper of bench_routing.py: the CPU one request costs, routed vs static, in ONE process.

Run as `python bench/routing_cpu_probe.py DB WORKDIR [--rounds R] [--requests N]` (DB: a
database made by bench_routing.py, with its `bench` user; or `postgresql:bench`, the catalog
entry bench_postgres.py registered in WORKDIR/instance, with BENCH_STATIC_PG_URL set). It
prints a table on stderr and the figures as one JSON line on stdout.

Both configurations live in the same process, on the same settings (`nukeworks.settings`,
`default` = DB, exactly as bench/static_settings.py points it), and are called the way
gunicorn calls them: a Django WSGIHandler, an environ carrying only the session cookie, the
response closed, which ends the request and closes its connections (CONN_MAX_AGE=0).

- routed: the project's MIDDLEWARE and DATABASE_ROUTERS; the request runs on the runtime
  alias of the file its session selected;
- static: bench/static_settings.py's MIDDLEWARE (no dbselect middleware, Django's own
  AuthenticationMiddleware) and no router: `default`, the same file.

Same session engine and same session *content*: the static session is a copy of the routed
one (same keys, same bytes), so both decode the same session, render the same template with
the same header and rows, and run the same three queries; neither writes its session (the
probe counts session cookies set, and reports them). Before measuring it checks that both
pages are identical apart from CSRF tokens and that no connection outlives its request.

Method, per page: both configurations are warmed (WARM alternations of N requests each),
then R rounds alternate them, A B then B A (ABBA...), N requests each. The time is the
serving thread's CPU (`time.thread_time`: the engine janitor thread, which gunicorn workers
run too, is not counted). Reported: the median ms/request of each configuration over the
rounds, the median of the per-round differences and ratios, and their spread (quartiles and
extremes). The process-wide costs (heap, threads, a second handler) are the same for both.

Null tests of the method: `--compare static-static` and `--compare routed-routed` put the
same configuration in both slots (a second session with the same content); whatever they
show is the method's own bias. `--static-session own` gives the static side its own sign-in
to the static site, as the previous probe did (a smaller session, no database name on the
page). The previous probe ran each configuration in its own processes; bench_routing.py's
docstring says what that did to the figure, with the numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGES = {"company list (50 rows)": ("/companies/", 50), "home": ("/", None)}
WARM = 4  # alternations of N requests per configuration before measuring
CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]*"')


def configure(db: str, work: Path) -> None:
    # A PostgreSQL target (bench_postgres.py): `default` is that database in both
    # configurations (bench/probe_pg_settings.py), the routed session selects its catalog
    # entry, whose catalog lies in WORKDIR/instance.
    postgres = db.startswith("postgresql:")
    os.environ.update(
        SECRET_KEY="bench-cpu-probe-secret-key-0123456789-0123456789",
        SESSION_FILE_PATH=str(work / "sessions"),
        NUKEWORKS_INSTANCE_DIR=str(work / "instance"),
        NUKEWORKS_DATABASES_DIR=str(work / "databases"),
        # `default` is the benchmark's file in both configurations (bench/static_settings.py
        # does the same for the static server); the routed requests use a runtime alias.
        NUKEWORKS_DEFAULT_DB=db,
        BENCH_STATIC_DB=db,
        DBSELECT_REGISTER_SCANNED="false",
        DB_CONN_MAX_AGE="0",
        LOG_LEVEL="WARNING",
        NUKEWORKS_ENV="testing",
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,testserver",
        DJANGO_SETTINGS_MODULE="bench.probe_pg_settings" if postgres else "nukeworks.settings",
    )
    warnings.simplefilter("ignore")  # no collected static files in the probe's folders
    import django

    django.setup()


class Config:
    """One configuration: its WSGI handler, its routers, its session cookie."""

    def __init__(self, name: str, handler, routers: list, cookie: str) -> None:
        self.name, self.handler, self.routers, self.cookie = name, handler, routers, cookie

    def get(self, path: str) -> tuple[str, bytes, bool]:
        """Serve one GET like gunicorn; return (status, body, session cookie set?)."""
        from django.db import router

        router.routers = self.routers
        environ = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_COOKIE": self.cookie,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        started: list = []
        response = self.handler(
            environ, lambda status, headers, exc_info=None: started.extend((status, headers))
        )
        try:
            body = b"".join(response)
        finally:
            response.close()  # request_finished: connections closed (CONN_MAX_AGE=0)
        saved = any(k == "Set-Cookie" and v.strip().startswith("sessionid=") for k, v in started[1])
        return started[0], body, saved

    def serve(self, path: str, count: int) -> tuple[float, int]:
        """Serve `count` GETs; return (CPU ms per request of this thread, session writes)."""
        writes = 0
        get = self.get
        started = time.thread_time()
        for _ in range(count):
            status, _body, saved = get(path)
            if status != "200 OK":
                raise SystemExit(f"{self.name} {path}: {status}")
            writes += saved
        return (time.thread_time() - started) * 1000 / count, writes


def build(db: str, static_session: str) -> dict[str, Config]:
    """Return the routed and static configurations (and the second copies of each, for the
    null tests), all signed in as the bench user."""
    from importlib import import_module

    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import router
    from django.test import Client
    from django.test.utils import override_settings

    import bench.static_settings as static_conf
    from bench.bench_routing import PASSWORD

    login = {"username": "bench", "password": PASSWORD}
    if db.startswith("postgresql:"):
        from dbselect import catalog

        entry = catalog.entry_for_target(db)
        if entry is None or settings.DATABASES["default"]["NAME"] != entry.url.dbname:
            raise SystemExit("static `default` is not the routed PostgreSQL database")
    elif static_conf.DATABASES["default"]["NAME"] != settings.DATABASES["default"]["NAME"]:
        raise SystemExit("static and routed `default` differ")
    routed_routers = list(router.routers)
    if not routed_routers or static_conf.DATABASE_ROUTERS:
        raise SystemExit("expected the project's router in routed mode and none in static")
    routed_handler = WSGIHandler()
    with override_settings(MIDDLEWARE=static_conf.MIDDLEWARE):
        static_handler = WSGIHandler()

    # A signed-in routed session, as a browser gets it: select the file, sign in, one page.
    client = Client()
    for url, form in (("/select-db", {"path": db}), ("/login/", login)):
        if client.post(url, form).status_code != 302:
            raise SystemExit(f"routed: POST {url} did not redirect")
    routed_key = client.cookies["sessionid"].value
    routed = Config("routed", routed_handler, routed_routers, f"sessionid={routed_key}")
    routed.get("/")  # the first page stores the file's fingerprint in the session
    store_class = import_module(settings.SESSION_ENGINE).SessionStore

    def copy_of_routed_session() -> str:
        copy = store_class()
        copy.update(store_class(session_key=routed_key).load())
        copy.create()
        return f"sessionid={copy.session_key}"

    if static_session == "copy":
        # The same session content: the same decode work and the same page (header included).
        static_cookie = copy_of_routed_session()
    else:  # "own": signed in to the static site (the old probe's session)
        router.routers = []
        with override_settings(MIDDLEWARE=static_conf.MIDDLEWARE):
            own = Client()
            if own.post("/login/", login).status_code != 302:
                raise SystemExit("static: POST /login/ did not redirect")
        static_cookie = f"sessionid={own.cookies['sessionid'].value}"
    return {
        "routed": routed,
        "static": Config("static", static_handler, [], static_cookie),
        # Null tests: the same configuration in both slots (another handler, another session
        # with the same content); any difference they show is the method's own bias.
        "routed-2": Config("routed-2", WSGIHandler(), routed_routers, copy_of_routed_session()),
        "static-2": Config("static-2", static_handler, [], copy_of_routed_session()),
    }


def check_pages(pair: tuple[Config, Config], equal: bool) -> dict[str, dict]:
    """Fail unless every page answers 200 with its rows; compare the two bodies."""
    from django.db import connections

    checks = {}
    for page, (path, rows) in PAGES.items():
        bodies = []
        for config in pair:
            status, body, _ = config.get(path)
            if status != "200 OK":
                raise SystemExit(f"{config.name} {path}: {status}")
            if rows is not None and body.count(b"Company 0") < rows:
                raise SystemExit(f"{config.name} {path}: fewer than {rows} companies")
            if any(c.connection is not None for c in connections.all(initialized_only=True)):
                raise SystemExit(f"{config.name} {path}: a connection outlived its request")
            bodies.append(CSRF.sub(b"", body))
        same = bodies[0] == bodies[1]
        if equal and not same:
            raise SystemExit(f"{path}: the two pages differ (not a fair comparison)")
        checks[page] = {
            "bodies_identical_but_csrf": same,
            "bytes": {config.name: len(body) for config, body in zip(pair, bodies, strict=True)},
        }
    return checks


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[1], q[2]


def measure(pair: tuple[Config, Config], rounds: int, count: int) -> dict[str, dict]:
    """Per page: warm both, then `rounds` alternations (ABBA) of `count` requests each."""
    first, second = pair
    result = {}
    for page, (path, _rows) in PAGES.items():
        for _ in range(WARM):
            for config in pair:
                config.serve(path, count)
        samples: dict[str, list[float]] = {first.name: [], second.name: []}
        writes = {first.name: 0, second.name: 0}
        for round_no in range(rounds):
            for config in pair if round_no % 2 == 0 else pair[::-1]:
                ms, written = config.serve(path, count)
                samples[config.name].append(ms)
                writes[config.name] += written
        a, b = samples[first.name], samples[second.name]
        diffs = [x - y for x, y in zip(a, b, strict=True)]
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        result[page] = {
            "ms": {first.name: statistics.median(a), second.name: statistics.median(b)},
            "diff_ms": statistics.median(diffs),
            "diff_ms_quartiles": quartiles(diffs),
            "diff_ms_range": (min(diffs), max(diffs)),
            "ratio": statistics.median(ratios),
            "ratio_quartiles": quartiles(ratios),
            "ratio_range": (min(ratios), max(ratios)),
            "session_writes_per_request": {n: w / (rounds * count) for n, w in writes.items()},
            "rounds": rounds,
            "requests_per_round": count,
            "samples": samples,
        }
    return result


COMPARISONS = {
    "routed-static": ("routed", "static"),
    "static-static": ("static", "static-2"),
    "routed-routed": ("routed", "routed-2"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db")
    parser.add_argument("work", type=Path)
    parser.add_argument("--rounds", type=int, default=30, help="alternations per page")
    parser.add_argument("--requests", type=int, default=40, help="requests per round")
    parser.add_argument(
        "--compare",
        choices=list(COMPARISONS),
        default="routed-static",
        help="the two configurations (the others are null tests of the method)",
    )
    parser.add_argument(
        "--static-session",
        choices=["copy", "own"],
        default="copy",
        help="copy: the routed session's content; own: the old probe's static sign-in",
    )
    args = parser.parse_args()
    configure(args.db, args.work)
    configs = build(args.db, args.static_session)
    pair = tuple(configs[name] for name in COMPARISONS[args.compare])
    equal = args.static_session == "copy" or "static" not in COMPARISONS[args.compare]
    checks = check_pages(pair, equal)
    result = measure(pair, args.rounds, args.requests)
    a, b = (config.name for config in pair)
    for page, figures in result.items():
        figures.update(checks[page])
        lo, _, hi = figures["diff_ms_quartiles"]
        print(
            f"{page:24s} {a} {figures['ms'][a]:.3f} ms, {b} {figures['ms'][b]:.3f} ms,"
            f" diff {figures['diff_ms']:+.3f} ms (quartiles {lo:+.3f}..{hi:+.3f}),"
            f" x{figures['ratio']:.3f}",
            file=sys.stderr,
        )
    print(
        json.dumps(
            {
                "compare": [a, b],
                "static_session": args.static_session,
                "pages": result,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
