"""A database file's own triggers cannot stop the server.

Files that carry triggers or views are refused at selection. A trigger added afterwards, by
another program, runs on NukeWorks' connections with `trusted_schema=OFF` (no Python
function such as `regexp()` may be called from it) and inside the per-query time budget: the
request is answered with a clear page within the budget, the worker stays alive, `/healthz`
answers throughout, and the write the trigger hung on is not saved.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import company_names
from tests.live import Browser, GunicornServer, set_password

BUDGET = 2.0
# Regular-expression backtracking that Python's re cannot be interrupted in (minutes).
REDOS = "SELECT regexp('(a+)+$', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab')"


class HealthWatch(threading.Thread):
    """Poll /healthz from another client while something hostile runs."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.browser = Browser(base)
        self.stop = threading.Event()
        self.answers: list[tuple[int, float]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                status, _ = self.browser.get("/healthz")
            except OSError:
                status = 0
            self.answers.append((status, time.monotonic() - started))
            time.sleep(0.1)


@pytest.fixture
def server(tmp_path):
    # One worker: the write must reach a worker that opened the file before the trigger
    # appeared (a worker meeting the file for the first time refuses it, as selection does).
    srv = GunicornServer(
        tmp_path / "server",
        workers=1,
        threads=4,
        env={"DBSELECT_QUERY_TIME_LIMIT": str(BUDGET)},
    ).start()
    yield srv
    srv.stop()


@pytest.fixture
def signed_in(server, make_database) -> tuple[Browser, Path]:
    db = make_database(name="Targeted", users=[("eve", "pw-eve-12345", False)])
    set_password(db, "eve", "pw-eve-12345")
    browser = Browser(server.base)
    assert browser.select(db)[0] == 200
    assert "Log out eve" in browser.sign_in("eve", "pw-eve-12345")[1]
    return browser, db


def _add(db: Path, *sql: str) -> None:
    conn = sqlite3.connect(db)
    try:
        for statement in sql:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def test_selecting_a_file_with_a_trigger_is_refused_at_once(server, make_database):
    db = make_database(name="Trap")
    _add(db, f"CREATE TRIGGER trap AFTER INSERT ON companies_company BEGIN {REDOS}; END")
    before = db.read_bytes()
    status, page = Browser(server.base).select(db)
    assert status == 400
    assert "The file defines triggers or views that NukeWorks did not create" in page
    assert "trigger &quot;trap&quot; on &quot;companies_company&quot;" in page
    assert db.read_bytes() == before


def _hostile_write(server: GunicornServer, browser: Browser) -> tuple[int, str, float, HealthWatch]:
    pids = server.worker_pids()
    watch = HealthWatch(server.base)
    watch.start()
    started = time.monotonic()
    status, page = browser.post("/companies/new/", {"name": "Hostage Co", "country": "X"})
    took = time.monotonic() - started
    time.sleep(0.5)
    watch.stop.set()
    watch.join()
    assert server.worker_pids() == pids, "a worker died or was killed by gunicorn's timeout"
    return status, page, took, watch


def test_a_python_function_in_a_trigger_is_never_called(server, signed_in):
    browser, db = signed_in
    _add(db, f"CREATE TRIGGER trap AFTER INSERT ON companies_company BEGIN {REDOS}; END")
    _status, page, took, watch = _hostile_write(server, browser)
    # trusted_schema=OFF: "unsafe use of regexp()" at once (the expression would backtrack for
    # minutes); the bound only says "not hung", with room for a loaded machine.
    assert took < BUDGET + 10
    assert "unsafe use of regexp()" in page and "Your change was not saved." in page
    assert watch.answers and all(s == 200 for s, _ in watch.answers)
    assert "Hostage Co" not in company_names(db)


def test_a_slow_trigger_is_stopped_by_the_time_budget(server, signed_in):
    browser, db = signed_in
    _add(
        db,
        "CREATE TABLE big (x INTEGER)",
        "INSERT INTO big SELECT value FROM generate_series(1, 1000)"
        if sqlite3.sqlite_version_info >= (3, 46)
        else "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000) "
        "INSERT INTO big SELECT x FROM n",
        # 10^9 rows: minutes of work for SQLite.
        "CREATE TRIGGER slow AFTER INSERT ON companies_company "
        "BEGIN SELECT count(*) FROM big a, big b, big c; END",
    )
    status, page, took, watch = _hostile_write(server, browser)
    assert status == 503, page
    assert "Request took too long" in page
    assert f"longer than {BUDGET:g} seconds" in page and "Your change was not saved." in page
    # Answered once the budget was spent, long before gunicorn's 60 s worker timeout.
    assert BUDGET <= took < BUDGET + 10
    assert watch.answers and all(s == 200 for s, _ in watch.answers)
    assert "Hostage Co" not in company_names(db)
