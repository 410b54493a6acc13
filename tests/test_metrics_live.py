"""Metrics and slow queries under the real server: gunicorn, 2 worker processes.

prometheus-client's multiprocess mode is the tricky part: each worker writes its own files in
PROMETHEUS_MULTIPROC_DIR (set by nukeworks/gunicorn.conf.py to instance/metrics/, emptied at
start) and whichever worker answers /metrics must add up both. So the traffic goes on until
both workers have written their files, and every scrape must give the exact totals sent.
"""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import wait_for
from tests.live import Browser, GunicornServer, set_password

TOKEN = "live-metrics-token-0123456789"


@pytest.fixture
def server(tmp_path):
    srv = GunicornServer(
        tmp_path / "server",
        workers=2,
        threads=2,
        env={"NUKEWORKS_METRICS_TOKEN": TOKEN, "NUKEWORKS_SLOW_QUERY_MS": "0"},
    )
    # A stale file of an earlier run: the start must remove it.
    stale = srv.root / "instance" / "metrics"
    stale.mkdir(parents=True)
    (stale / "counter_999999.db").write_bytes(b"stale")
    yield srv.start()
    srv.stop()


def _database(server, make_database, label: str, users) -> Path:
    path = server.root / "databases" / label / "nukeworks.sqlite"
    path.parent.mkdir(parents=True)
    make_database(path=path, users=[(u, p, staff) for u, p, staff in users])
    for username, password, _ in users:
        set_password(path, username, password)
    return path


def _signed_in(server, path, username, password) -> Browser:
    browser = Browser(server.base)
    browser.select(path)
    status, body = browser.sign_in(username, password)
    assert status == 200 and f"Log out {username}" in body
    return browser


def scrape(server, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(server.base + "/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    values = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return status, values


def _requests(values: dict, label: str) -> float:
    key = ("nukeworks_http_requests_total", frozenset({("database", label), ("status", "2xx")}))
    return values.get(key, 0.0)


def _writers(server) -> set[int]:
    """The worker pids that have written metric files."""
    folder = server.root / "instance" / "metrics"
    return {
        int(m.group(1))
        for f in folder.glob("counter_*.db")
        if (m := re.search(r"_(\d+)\.db$", f.name))
    }


def test_metrics_add_up_both_workers_and_keep_databases_apart(server, make_database):
    alpha_db = _database(server, make_database, "alpha", [("boss", "pw-boss-123", True)])
    beta_db = _database(server, make_database, "beta", [("boss", "pw-boss-123", True)])
    alpha = _signed_in(server, alpha_db, "boss", "pw-boss-123")
    beta = _signed_in(server, beta_db, "boss", "pw-boss-123")
    assert "counter_999999.db" not in {
        f.name for f in (server.root / "instance" / "metrics").iterdir()
    }

    status, before = scrape(server)
    assert status == 200
    sent = {"alpha": 0, "beta": 0}
    lock = threading.Lock()

    def load(browser: Browser, label: str, count: int) -> None:
        for _ in range(count):
            assert browser.get("/companies/")[0] == 200
            with lock:
                sent[label] += 1

    workers = set(server.worker_pids())
    # New connections per request: the kernel hands them to either worker. Until both have
    # written their files (bounded).
    for _ in range(20):
        threads = [
            threading.Thread(target=load, args=(alpha, "alpha", 5)),
            threading.Thread(target=load, args=(beta, "beta", 4)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if _writers(server) >= workers:
            break
    assert _writers(server) >= workers, "the load did not reach both workers"

    # Two scrapes, whichever workers answer them: the exact totals every time.
    for _ in range(2):
        status, after = scrape(server)
        assert status == 200
        assert _requests(after, "alpha") - _requests(before, "alpha") == sent["alpha"]
        assert _requests(after, "beta") - _requests(before, "beta") == sent["beta"]
        for label in ("alpha", "beta"):
            queries = ("nukeworks_db_queries_total", frozenset({("database", label)}))
            assert after.get(queries, 0) > before.get(queries, 0)
            slow = ("nukeworks_db_slow_queries_total", frozenset({("database", label)}))
            assert after.get(slow, 0) > before.get(slow, 0)
        assert after[("nukeworks_workers", frozenset())] == 2
    # Labels only: no path of a database file.
    request = urllib.request.Request(
        server.base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read().decode()
    assert str(server.root) not in body


def test_metrics_are_refused_without_a_token_or_to_non_admins(server, make_database):
    path = _database(server, make_database, "clerks", [("clerk", "pw-clerk-123", False)])
    assert scrape(server, token=None)[0] == 401
    assert scrape(server, token="wrong-token")[0] == 401
    clerk = _signed_in(server, path, "clerk", "pw-clerk-123")
    assert clerk.get("/metrics")[0] == 403


def test_slow_queries_of_both_workers_are_on_the_admin_page(server, make_database):
    path = _database(server, make_database, "slowdb", [("boss", "pw-boss-123", True)])
    admin = _signed_in(server, path, "boss", "pw-boss-123")
    workers = set(server.worker_pids())

    def page_pids() -> set[int]:
        status, page = admin.get("/database/slow-queries")
        assert status == 200
        return {int(p) for p in re.findall(r"<td>(\d+)</td>\s*<td><code", page)}

    def both_listed() -> bool:
        for _ in range(4):
            Browser(server.base).get("/healthz")
            admin.get("/companies/")
        return page_pids() >= workers

    assert wait_for(both_listed, timeout=30), page_pids()
