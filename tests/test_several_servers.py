"""Several app servers sharing one Redis, with PostgreSQL databases and SQLite files.

Two real gunicorn servers (the shipped configuration: gthread workers, connections closed
after each request) run side by side with their own instance/ folders (no shared sessions,
engine store or selector file on disk): only REDIS_URL, the databases/ folder and the
SECRET_KEY are common, as on two hosts. PostgreSQL and Redis are real servers on loopback
(tests/services.py); HAProxy, where used, is Debian's, round robin without stickiness.

A browser session keeps one cookie jar and sends each request to whichever server it likes.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import redis

from dbselect import catalog
from nukeworks.cluster import services
from tests.live import Browser, GunicornServer, set_password

PASSWORD = "pw-several-123"
COMPANY_URL = re.compile(r"/companies/(\d+)/$")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class RoamingBrowser(Browser):
    """One browser session (one cookie jar) whose requests go to any of several servers."""

    def __init__(self, bases: list[str]) -> None:
        super().__init__(bases[0])
        self.bases = bases
        self.sent = 0
        self.plain = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect
        )

    def on(self, index: int) -> RoamingBrowser:
        """Send the next requests to server `index`."""
        self.base = self.bases[index]
        return self

    def next(self) -> RoamingBrowser:
        """Send the next request to the next server, in turn."""
        self.sent += 1
        return self.on(self.sent % len(self.bases))

    def create_company(self, name: str) -> tuple[int, str]:
        """POST the new-company form without following the redirect: (status, Location)."""
        form = {"csrfmiddlewaretoken": self.cookie("csrftoken") or "", "name": name}
        request = urllib.request.Request(
            self.base + "/companies/new/",
            data=urllib.parse.urlencode({**form, "country": "Roaming"}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with self.plain.open(request, timeout=60) as response:
                return response.status, ""
        except urllib.error.HTTPError as exc:
            exc.read()
            return exc.code, exc.headers.get("Location", "")


def set_pg_password(target: str, username: str, password: str) -> None:
    """Store a PBKDF2 hash (the servers run the production hashers) in a PostgreSQL database."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    encoded = PBKDF2PasswordHasher().encode(password, "livetestsalt0123", iterations=1000)
    entry = catalog.entry_for_target(target)
    with psycopg.connect(entry.url.url()) as conn:
        conn.execute(
            "UPDATE accounts_user SET password = %s WHERE username = %s", (encoded, username)
        )


def pg_company_names(target: str) -> set[str]:
    """Return every company name in a PostgreSQL database, read with plain psycopg."""
    entry = catalog.entry_for_target(target)
    with psycopg.connect(entry.url.url()) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM companies_company")}


def pg_sessions(target: str) -> int:
    """Return how many sessions NukeWorks holds open on a PostgreSQL database."""
    entry = catalog.entry_for_target(target)
    server = entry.url.with_dbname("postgres")
    with psycopg.connect(server.url()) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = 'nukeworks'",
            (entry.url.dbname,),
        ).fetchone()
    return int(row[0])


_redis_db = iter(range(1, 16))


@pytest.fixture
def shared_redis(redis_server: services.Service, settings) -> str:
    """An empty Redis database of its own for this test; the catalog is kept there too."""
    url = redis_server.extra["url"].rsplit("/", 1)[0] + f"/{next(_redis_db)}"
    redis.Redis.from_url(url).flushdb()
    # This process registers the catalog entries the servers read.
    settings.REDIS_URL = url
    return url


@dataclass
class Cluster:
    """Two app servers (and their shared folders)."""

    servers: list[GunicornServer]
    databases: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def bases(self) -> list[str]:
        return [server.base for server in self.servers]


def _start_servers(tmp_path: Path, redis_url: str, operator_db: Path, **env: str) -> Cluster:
    from dbselect.conf import get_config

    databases = Path(get_config()["DATABASES_DIR"])
    common = {
        "REDIS_URL": redis_url,
        "NUKEWORKS_DATABASES_DIR": str(databases),
        "NUKEWORKS_OPERATOR_DATABASES": str(operator_db),
        **env,
    }
    servers = [
        GunicornServer(tmp_path / f"server-{name}", workers=2, threads=4, env=common)
        for name in ("a", "b")
    ]
    started: list[GunicornServer] = []
    try:
        for server in servers:
            started.append(server.start())
    except BaseException:
        for server in started:
            server.stop()
        raise
    return Cluster(servers, databases)


@pytest.fixture
def operator_db(make_database) -> Path:
    """A SQLite file whose admin is an operator (the engines page, dispose)."""
    path = make_database(name="Operators", users=[("root", PASSWORD, True)], label="ops")
    set_password(path, "root", PASSWORD)
    return path


@pytest.fixture
def cluster(tmp_path, shared_redis, operator_db) -> Iterator[Cluster]:
    """Servers A and B, sharing Redis and the databases folder only."""
    cluster = _start_servers(tmp_path, shared_redis, operator_db)
    try:
        yield cluster
    finally:
        for server in cluster.servers:
            server.stop()


def _pg(make_pg_database, label: str, marker: str, users=("ann",)) -> str:
    target = make_pg_database(
        label,
        name=f"PG {label}",
        companies=[marker],
        users=[(u, PASSWORD, True) for u in users],
    )
    for user in users:
        set_pg_password(target, user, PASSWORD)
    return target


def _file(make_database, label: str, marker: str, users=("ann",)) -> Path:
    path = make_database(
        name=f"File {label}",
        companies=[marker],
        users=[(u, PASSWORD, True) for u in users],
        label=label,
    )
    for user in users:
        set_password(path, user, PASSWORD)
    return path


def test_a_session_alternates_between_servers(cluster, make_pg_database, make_database):
    pg = _pg(make_pg_database, "sales", "Sales Seed")
    sqlite_file = _file(make_database, "site", "Site Seed")
    for target, name in ((pg, "PG sales"), (str(sqlite_file), "File site")):
        browser = RoamingBrowser(cluster.bases)
        # Picked from server A's selector list…
        status, page = browser.on(0).get("/select-db")
        assert status == 200 and f'value="{target}"' in page
        status, page = browser.on(0).select(target)
        assert status == 200 and "Sign in" in page, page[-1500:]
        # … signed in on B …
        status, page = browser.on(1).sign_in("ann", PASSWORD)
        assert "Log out ann" in page and name in page, page[-1500:]
        # … a company created on A …
        status, location = browser.on(0).create_company(f"Made on A in {name}")
        assert status == 302 and COMPANY_URL.search(location), (status, location)
        # … and read on B.
        status, page = browser.on(1).get("/companies/")
        assert status == 200 and f"Made on A in {name}" in page
    assert "Made on A in PG sales" in pg_company_names(pg)
    assert "Made on A in PG sales" not in page


def test_sessions_on_many_databases_never_see_each_others_rows(
    cluster, make_pg_database, make_database
):
    threads, requests_each = 8, 200
    # One account per session: the first sign-in upgrades a password's hash, which signs out
    # other sessions of the same account.
    users = [f"u{i}" for i in range(threads)]
    markers = {"north": "Only North", "south": "Only South", "lake": "Only Lake"}
    targets = {
        "north": _pg(make_pg_database, "north", markers["north"], users),
        "south": _pg(make_pg_database, "south", markers["south"], users),
        "lake": str(_file(make_database, "lake", markers["lake"], users)),
    }
    wrong: list[str] = []
    answered = [0] * threads

    def session(index: int) -> None:
        label = list(targets)[index % 3]
        browser = RoamingBrowser(cluster.bases)
        browser.on(index % 2).select(targets[label])
        assert f"Log out u{index}" in browser.next().sign_in(f"u{index}", PASSWORD)[1]
        others = [m for k, m in markers.items() if k != label]
        for n in range(requests_each):
            browser.next()
            if n % 20 == 0:
                status, location = browser.create_company(f"{label}-{index}-{n}")
                ok = status == 302 and COMPANY_URL.search(location)
                if not ok:
                    wrong.append(f"{label}: create answered {status} {location}")
                continue
            status, page = browser.get("/companies/")
            if status != 200 or markers[label] not in page:
                wrong.append(f"{label}: {status}, own rows missing")
            for other in others:
                if other in page:
                    wrong.append(f"{label}: saw {other}")
            answered[index] += 1

    workers = [threading.Thread(target=session, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert wrong == []
    assert sum(answered) == threads * (requests_each - requests_each // 20)
    # The writes went where their sessions were, and only there.
    north = pg_company_names(targets["north"])
    assert {n for n in north if n.startswith("north-")} and not any(
        n.startswith(("south-", "lake-")) for n in north
    )


def test_dispose_on_one_server_closes_the_engine_on_the_other(
    tmp_path, shared_redis, operator_db, make_pg_database
):
    # Persistent connections, so that an idle engine really holds PostgreSQL sessions.
    cluster = _start_servers(tmp_path, shared_redis, operator_db, DB_CONN_MAX_AGE="600")
    try:
        pg = _pg(make_pg_database, "ledger", "Ledger Seed")
        user = RoamingBrowser(cluster.bases)
        user.on(1).select(pg)
        user.on(1).sign_in("ann", PASSWORD)
        for _ in range(12):
            assert user.on(1).get("/companies/")[0] == 200
        assert pg_sessions(pg) > 0
        operator = RoamingBrowser(cluster.bases)
        operator.on(0).select(str(operator_db))
        assert "Log out root" in operator.on(0).sign_in("root", PASSWORD)[1]
        # A's engines page lists B's engines (the worker reports are in Redis).
        deadline = time.monotonic() + 15
        while f'value="{pg}"' not in operator.on(0).get("/admin/engines/")[1]:
            assert time.monotonic() < deadline, "B's engine never appeared on A's engines page"
            time.sleep(0.2)
        status, page = operator.on(0).post("/admin/engines/dispose", {"path": pg})
        assert status == 200 and "Disposed" in page, page[-1500:]
        # B's workers close their idle connections at their janitor's next tick.
        deadline = time.monotonic() + 10
        while pg_sessions(pg) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pg_sessions(pg) == 0
        # The session carries on, re-validated, on either server.
        assert "Ledger Seed" in user.on(1).get("/companies/")[1]
        assert "Ledger Seed" in user.on(0).get("/companies/")[1]
    finally:
        for server in cluster.servers:
            server.stop()


def test_stopping_a_server_mid_run_loses_no_acknowledged_write(cluster, make_pg_database, tmp_path):
    pg = _pg(make_pg_database, "orders", "Orders Seed", users=[f"w{i}" for i in range(4)])
    balancer = services.start_haproxy(
        tmp_path / "haproxy",
        [("a", cluster.servers[0].port), ("b", cluster.servers[1].port)],
        health_path="/healthz",
    )
    base = f"http://127.0.0.1:{balancer.port}"
    acknowledged: dict[str, float] = {}
    problems: list[str] = []
    # Answered 502 by HAProxy: a request A had queued but never accepted when it stopped
    # listening (gunicorn's graceful stop finishes only accepted ones). Never acknowledged,
    # so never counted as saved; the user sees an error and sends it again.
    unanswered: list[str] = []
    stop_at = time.monotonic() + 6
    deadline = stop_at + 8

    def writer(index: int) -> None:
        browser = RoamingBrowser([base])
        browser.select(pg)
        status, page = browser.sign_in(f"w{index}", PASSWORD)
        assert f"Log out w{index}" in page
        n = 0
        while time.monotonic() < deadline:
            name = f"w{index}-{n}"
            n += 1
            try:
                status, location = browser.create_company(name)
            except OSError as exc:
                problems.append(f"{name}: no answer ({exc})")
                continue
            if status == 302 and COMPANY_URL.search(location):
                acknowledged[name] = time.monotonic()
            elif status in (502, 503):
                unanswered.append(name)
            else:
                problems.append(f"{name}: {status} {location}")

    try:
        workers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(max(0.0, stop_at - time.monotonic()))
        cluster.servers[0].stop()
        stopped = time.monotonic()
        for worker in workers:
            worker.join()
    finally:
        balancer.stop()
    present = pg_company_names(pg)
    lost = set(acknowledged) - present
    after = [n for n, t in acknowledged.items() if t > stopped + 1]
    print(
        f"stop A: {len(acknowledged)} acknowledged, {len(after)} after the stop, "
        f"{len(unanswered)} unanswered (502/503)"
    )
    assert lost == set()
    # The same sessions carried on through B: never sent to the sign-in page or the selector.
    assert problems == []
    assert len(after) > 20
    assert len(unanswered) <= 4 * 3
