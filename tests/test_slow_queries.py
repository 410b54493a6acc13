"""The slow-query log per database: one structured line per slow statement, on any alias.

Real files, runtime aliases, requests through the whole middleware stack. No timing is
asserted: a threshold of 1 ms against a recursive CTE counting to a million (always far
slower), 0 (every statement is logged: counted) or a minute (nothing is).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from dbselect import engines
from dbselect.engines import slow_queries
from dbselect.engines import workers as engine_workers
from dbselect.engines.observe import label_of
from tests.helpers import select, sign_in

SLOW_SQL = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
    "SELECT count(*) FROM c"
)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def slow_log() -> Iterator[list[logging.LogRecord]]:
    """The records of the nukeworks.slow_query logger during the test."""
    handler = _Collect()
    logger = logging.getLogger("nukeworks.slow_query")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    slow_queries.clear()
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        slow_queries.clear()


@pytest.fixture(autouse=True)
def _own_store(tmp_path, settings) -> Iterator[None]:
    settings.DBSELECT = {
        **settings.DBSELECT,
        "ENGINE_STORE_DIR": tmp_path / "engines",
        "ENGINE_REFRESH_WAIT": 0,
    }
    yield
    engine_workers.reset_store()


def _threshold(settings, ms: float) -> None:
    settings.DBSELECT = {**settings.DBSELECT, "SLOW_QUERY_MS": ms}


def _run(alias: str, sql: str, params=None) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        cursor.fetchall()


def _of(records, marker: str) -> list[logging.LogRecord]:
    return [r for r in records if marker in r.sql]


def test_a_slow_statement_on_a_runtime_alias_is_one_line_naming_its_database(
    make_database, settings, slow_log
):
    path = make_database(name="Far plant")  # outside the catalog: a runtime alias nw_…
    _threshold(settings, 1)
    engine = engines.register(str(path))
    assert engine.alias.startswith("nw_")
    _run(engine.alias, SLOW_SQL)
    lines = _of(slow_log, "WITH RECURSIVE")
    assert len(lines) == 1
    line = lines[0]
    assert line.levelno == logging.WARNING
    assert line.event == "slow_query"
    assert line.database == engine.alias == line.alias
    assert line.db_path == engine.path
    assert engine.alias in line.getMessage() and engine.path in line.getMessage()
    assert line.duration_ms >= 1
    assert line.sql.startswith("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL")
    assert (line.request_path, line.user) == ("", "")
    assert line.many is False


def test_a_catalog_database_is_named_by_its_label(make_database, settings, slow_log):
    path = make_database(label="plant")
    _threshold(settings, 1)
    engine = engines.register(str(path))
    _run(engine.alias, SLOW_SQL)
    (line,) = _of(slow_log, "WITH RECURSIVE")
    assert line.database == "plant"
    assert line.alias == engine.alias


def test_below_the_threshold_nothing_is_logged(make_database, settings, slow_log):
    path = make_database()
    _threshold(settings, 60_000)
    engine = engines.register(str(path))
    _run(engine.alias, SLOW_SQL)
    assert slow_log == []
    assert slow_queries.recent(engine.path) == []


def test_a_negative_threshold_turns_the_log_off(make_database, settings, slow_log):
    path = make_database()
    _threshold(settings, -1)
    engine = engines.register(str(path))
    _run(engine.alias, "SELECT 1")
    _run(engine.alias, SLOW_SQL)
    assert slow_log == []


def test_threshold_zero_logs_every_statement_of_a_request_with_its_path_and_user(
    make_database, settings, slow_log
):
    path = make_database(label="plant", users=[("boss", "pw-boss-123", True)])
    client = Client()
    select(client, path)
    sign_in(client, "boss", "pw-boss-123")
    alias = engines.get(str(path)).alias
    _threshold(settings, 0)
    slow_log.clear()
    with CaptureQueriesContext(connections[alias]) as ran:
        assert client.get("/companies/").status_code == 200
    lines = [r for r in slow_log if r.request_path == "/companies/"]
    assert len(ran.captured_queries) > 0
    assert len(lines) == len(ran.captured_queries)
    assert {r.database for r in lines} == {"plant"}
    # The user is named once the request has loaded it (the first statements load it).
    assert "boss" in {r.user for r in lines}
    assert {r.user for r in lines} <= {"boss", ""}


def test_parameters_and_string_literals_are_never_logged(make_database, settings, slow_log):
    path = make_database()
    _threshold(settings, 0)
    engine = engines.register(str(path))
    _run(
        engine.alias,
        "SELECT count(*) FROM companies_company WHERE name = %s OR notes = 'literal-secret'",
        ["param-secret"],
    )
    (line,) = _of(slow_log, "companies_company WHERE name")
    assert line.sql == ("SELECT count(*) FROM companies_company WHERE name = ? OR notes = '?'")
    for text in (line.getMessage(), repr(line.__dict__), repr(slow_queries.recent())):
        assert "param-secret" not in text
        assert "literal-secret" not in text


def test_recent_slow_queries_are_kept_per_database_newest_first(make_database, settings, slow_log):
    a = engines.register(str(make_database(name="A")))
    b = engines.register(str(make_database(name="B")))
    settings.DBSELECT = {**settings.DBSELECT, "SLOW_QUERY_MS": 0, "SLOW_QUERY_KEEP": 3}
    for n in range(5):
        _run(a.alias, f"SELECT {n} AS a_query")
    _run(b.alias, "SELECT 42 AS b_query")
    kept = slow_queries.recent(a.path)
    assert [q["sql"] for q in kept] == [f"SELECT {n} AS a_query" for n in (4, 3, 2)]
    assert [q["sql"] for q in slow_queries.recent(b.path)] == ["SELECT 42 AS b_query"]


def test_other_workers_slow_queries_come_from_the_shared_store(make_database, settings, slow_log):
    path = str(make_database())
    engine = engines.register(path)
    _threshold(settings, 0)
    _run(engine.alias, "SELECT 'here' AS mine")
    other = {
        "at": time.time() - 5,
        "database": label_of(engine.alias, engine.path),
        "alias": engine.alias,
        "db_path": engine.path,
        "duration_ms": 1234.5,
        "sql": "SELECT 'elsewhere'",
        "many": False,
        "request_path": "/companies/",
        "user": "clerk",
        "pid": 999_999,
    }
    store = engine_workers.get_store()
    store.publish("otherhost:999999", "otherhost", 999_999, {"slow_queries": {path: [other]}})
    found = slow_queries.recent_for(engine.path)
    assert [q["pid"] for q in found][-1] == 999_999
    assert {q["sql"] for q in found} == {"SELECT '?' AS mine", "SELECT 'elsewhere'"}


def test_admins_see_the_slow_queries_of_their_database_only(make_database, settings, slow_log):
    mine = make_database(name="Mine", users=[("boss", "pw-boss-123", True)])
    other = make_database(name="Other")
    client = Client()
    select(client, mine)
    sign_in(client, "boss", "pw-boss-123")
    _threshold(settings, 1)
    _run(engines.register(str(mine)).alias, SLOW_SQL)
    _run(engines.register(str(other)).alias, SLOW_SQL.replace("count(*)", "max(x)"))
    assert 'class="slow-queries-link"' in client.get("/").content.decode()
    response = client.get("/database/slow-queries")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<tr class="slow-query">') == 1
    assert "SELECT count(*) FROM c" in html
    assert "max(x)" not in html


def test_the_slow_query_page_is_for_admins(make_database, settings):
    path = make_database(users=[("clerk", "pw-clerk-123", False)])
    client = Client()
    select(client, path)
    assert client.get("/database/slow-queries").status_code == 403
    sign_in(client, "clerk", "pw-clerk-123")
    assert client.get("/database/slow-queries").status_code == 403
    assert "slow-queries-link" not in client.get("/").content.decode()


def test_the_engines_page_shows_recent_slow_queries_per_database(make_database, settings, slow_log):
    operator_db = make_database(label="default", users=[("boss", "pw-boss-123", True)])
    client = Client()
    select(client, operator_db)
    sign_in(client, "boss", "pw-boss-123")
    slow = str(make_database(name="Slow plant"))
    quiet = str(make_database(name="Quiet plant"))
    engines.register(quiet)
    _threshold(settings, 1)
    _run(engines.register(slow).alias, SLOW_SQL)
    html = client.get("/admin/engines/").content.decode()
    slow_row = html[html.index(f'data-path="{slow}"') :]
    slow_row = slow_row[: slow_row.index("</tr>")]
    quiet_row = html[html.index(f'data-path="{quiet}"') :]
    quiet_row = quiet_row[: quiet_row.index("</tr>")]
    assert 'data-count="1"' in slow_row and "SELECT count(*) FROM c" in slow_row
    assert 'data-count="0"' in quiet_row
