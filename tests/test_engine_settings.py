"""The engines page shows each engine's connection settings in force, and answers at once.

Journal mode, synchronous and busy timeout as SQLite reports them on a real connection
(PRAGMA), CONN_MAX_AGE of the alias and the per-thread cap; the page does not wait for other
workers (their tables are refreshed by static/dbselect/engines.js from /admin/engines/data).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.db import connections
from django.test import Client

from dbselect import engines
from dbselect.engines import observe
from dbselect.engines import workers as engine_workers
from tests.helpers import select, sign_in

URL = "/admin/engines/"


@pytest.fixture(autouse=True)
def _own_store(tmp_path, settings) -> Iterator[None]:
    settings.DBSELECT = {**settings.DBSELECT, "ENGINE_STORE_DIR": tmp_path / "engines"}
    yield
    engine_workers.reset_store()


@pytest.fixture
def operator(make_database) -> Client:
    path = make_database(name="Control", users=[("boss", "pw-boss-123", True)], label="default")
    client = Client()
    select(client, path)
    sign_in(client, "boss", "pw-boss-123")
    return client


def _row(html: str, path: str) -> str:
    row = html[html.index(f'data-path="{path}"') :]
    return row[: row.index("</tr>")]


def _use(path: str) -> None:
    alias = engines.register(path).alias
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")


def test_each_engine_shows_the_settings_sqlite_reports(operator, make_database):
    path = str(make_database(name="Plant"))
    _use(path)
    row = _row(operator.get(URL).content.decode(), path)
    assert '<td class="journal">WAL</td>' in row
    assert "synchronous FULL" in row
    assert "busy timeout 5000 ms" in row
    assert "CONN_MAX_AGE 0 s" in row
    assert "at most 8 per thread" in row
    assert "configured (no connection yet)" not in row


def test_changed_settings_are_the_ones_shown(operator, make_database, settings):
    settings.DBSELECT = {
        **settings.DBSELECT,
        "SYNCHRONOUS": "NORMAL",
        "BUSY_TIMEOUT": 2.5,
        "MAX_CONNECTIONS_PER_THREAD": 3,
    }
    path = str(make_database(name="Tuned"))
    _use(path)
    alias = engines.get(path).alias
    seen = observe.settings_in_force(alias)
    assert seen["synchronous"] == "NORMAL"
    assert seen["busy_timeout_ms"] == 2500
    assert seen["journal_mode"] == "WAL"
    assert seen["observed"]
    row = _row(operator.get(URL).content.decode(), path)
    assert "synchronous NORMAL" in row
    assert "busy timeout 2500 ms" in row
    assert "at most 3 per thread" in row


def test_an_engine_nobody_connected_to_shows_its_configured_settings(make_database):
    path = str(make_database(name="Idle"))
    alias = engines.register(path).alias
    observe._in_force.pop(alias, None)
    observe._in_force_of.pop(alias, None)
    seen = observe.settings_in_force(alias)
    assert seen == {
        "journal_mode": "WAL",
        "synchronous": "FULL",
        "busy_timeout_ms": 5000,
        "observed": None,
        "conn_max_age": 0,
        "per_thread_cap": 8,
    }


def test_the_page_does_not_wait_for_other_workers_and_its_refresh_does(
    operator, make_database, settings
):
    # Another worker that published once and never answers again: the page would have
    # waited ENGINE_REFRESH_WAIT for it; it shows its last table and asks for a refresh.
    settings.DBSELECT = {**settings.DBSELECT, "ENGINE_REFRESH_WAIT": 0}
    path = str(make_database(name="Plant"))
    _use(path)
    store = engine_workers.get_store()
    store.publish("otherhost:4242", "otherhost", 4242, {"engines": [], "slow_queries": {}})
    before = store.refresh_counter()
    response = operator.get(URL)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="missing-workers" data-refreshing="1"' in html
    assert '<tr class="worker" data-pid="4242" data-host="otherhost">' in html
    assert store.refresh_counter() > before  # the other workers were asked
    assert 'data-refresh-url="/admin/engines/data"' in html
    assert "/static/dbselect/engines.js" in html
    assert "<script>" not in html  # CSP: no inline code

    asked = html.split('data-asked="', 1)[1].split('"', 1)[0]
    data = operator.get(URL + "data", {"since": asked})
    assert data.status_code == 200
    body = data.json()
    assert body["missing"] == 1
    assert f'data-path="{path}"' in body["html"]
    assert "did not answer in time" in body["html"]
    assert "synchronous FULL" in body["html"]


def test_the_refresh_takes_tables_published_since_the_page_asked(operator, make_database):
    store = engine_workers.get_store()
    asked = time.time() - 1
    store.publish("otherhost:4343", "otherhost", 4343, {"engines": [], "slow_queries": {}})
    data = operator.get(URL + "data", {"since": f"{asked:.6f}"}).json()
    assert data["missing"] == 0
    assert "did not answer in time" not in data["html"]
    assert 'data-pid="4343"' in data["html"]


def test_the_refresh_is_for_operators_only(make_database):
    path = make_database(users=[("boss", "pw-boss-123", True)])
    client = Client()
    select(client, path)
    sign_in(client, "boss", "pw-boss-123")  # admin of a database that is not an operator one
    assert client.get(URL + "data").status_code == 403
