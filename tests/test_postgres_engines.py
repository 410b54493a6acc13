"""PostgreSQL databases of the catalog on the engines page and in the API, on a real server:
the page lists the engine with its redacted URL, dispose ends its server sessions (persistent
connections, CONN_MAX_AGE > 0), and the API's catalog, engines and domain endpoints work on a
PostgreSQL database with a token stored in it."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from django.test import Client

from dbselect import catalog, engines, state
from dbselect.catalog import dsn
from dbselect.engines import connections as tracking
from dbselect.engines import workers as engine_store
from nukeworks.companies.models import Company
from tests.helpers import messages_of, select, sign_in

PASSWORD = "pw-pg-123"


@pytest.fixture(autouse=True)
def _own_store(tmp_path, settings):
    """Each test its own engine store; this test process plays the server threads itself."""
    settings.DBSELECT = {
        **settings.DBSELECT,
        "ENGINE_STORE_DIR": tmp_path / "engines",
        "ENGINE_REFRESH_WAIT": 0,
        "ENGINE_JANITOR": False,
    }
    yield
    engine_store.reset_store()


@pytest.fixture
def persistent(monkeypatch):
    """CONN_MAX_AGE > 0 for the aliases registered from now on (built on `default`)."""
    monkeypatch.setitem(connections.databases["default"], "CONN_MAX_AGE", 600)


@pytest.fixture
def operator(make_database) -> Client:
    default = make_database(name="Default", users=[("root", PASSWORD, True)], label="default")
    client = Client()
    select(client, default)
    assert sign_in(client, "root", PASSWORD).status_code == 302
    return client


def server_sessions(postgres_server, dbname: str) -> int:
    """NukeWorks's sessions on `dbname`, as the server sees them."""
    with psycopg.connect(postgres_server.extra["url"], application_name="test-probe") as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'nukeworks'",
            (dbname,),
        ).fetchone()[0]


def wait_for_sessions(postgres_server, dbname: str, expected: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        found = server_sessions(postgres_server, dbname)
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


class ServerThread(threading.Thread):
    """One request on `alias` the way a gunicorn gthread worker serves it, then idle, holding
    its persistent connection (as with CONN_MAX_AGE > 0)."""

    def __init__(self, alias: str) -> None:
        super().__init__(daemon=True)
        self.alias = alias
        self.opened = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        tracking.on_request_started(sender=WSGIHandler)
        with state.override(self.alias):
            Company.objects.count()
        tracking.on_request_finished(sender=WSGIHandler)
        self.opened.set()
        self.release.wait(20)


def test_engines_page_lists_and_disposes_a_postgresql_engine(
    operator, make_pg_database, postgres_server, persistent
):
    target = make_pg_database("plant-pg", name="Plant PG", users=[("kim", PASSWORD, False)])
    dbname = catalog.entry_for_target(target).url.dbname
    user = Client()
    select(user, target)
    assert sign_in(user, "kim", PASSWORD).status_code == 302
    assert user.get("/companies/").status_code == 200
    engine = engines.get(target)
    assert engine.kind == "postgresql"
    assert connections.databases[engine.alias]["CONN_MAX_AGE"] == 600
    threads = [ServerThread(engine.alias) for _ in range(3)]
    for thread in threads:
        thread.start()
        assert thread.opened.wait(10)
    # Three idle server threads and this one (the test client's) keep their connections.
    assert wait_for_sessions(postgres_server, dbname, 4) == 4

    html = operator.get("/admin/engines/").content.decode()
    assert 'data-path="postgresql:plant-pg"' in html
    row = html.split('data-path="postgresql:plant-pg"', 1)[1].split("</tr>", 1)[0]
    assert "Plant PG" in row and 'class="badge kind">PostgreSQL' in row
    assert f"postgresql://postgres:********@127.0.0.1:{postgres_server.port}/{dbname}" in row
    assert f"127.0.0.1:{postgres_server.port}/{dbname}" in row
    assert "synchronous" not in row and "busy timeout" not in row
    assert "CONN_MAX_AGE 600 s" in row
    assert postgres_server.extra["url"].split(":")[2].split("@")[0] not in html  # password
    # The page's refresh (static/dbselect/engines.js) renders the same row.
    refreshed = operator.get("/admin/engines/data").json()["html"]
    assert 'class="badge kind">PostgreSQL' in refreshed and "CONN_MAX_AGE 600 s" in refreshed

    response = operator.post("/admin/engines/dispose", {"path": target}, follow=True)
    assert any("Disposed Plant PG" in m for m in messages_of(response))
    assert wait_for_sessions(postgres_server, dbname, 0) == 0
    assert engines.get(target) is None
    # The session carries on: its next request opens the database again.
    assert user.get("/companies/").status_code == 200
    assert wait_for_sessions(postgres_server, dbname, 1) == 1
    for thread in threads:
        thread.release.set()
        thread.join(10)


def test_the_engines_page_survives_a_removed_entry(operator, make_pg_database):
    target = make_pg_database("gone", name="Gone PG")
    engines.open(target)
    catalog.remove("gone")  # the store only: this process still caches the engine
    html = operator.get("/admin/engines/").content.decode()
    assert "postgresql:gone (no longer in the catalog)" in html
    assert operator.post("/admin/engines/dispose", {"path": target}).status_code == 302
    assert engines.get(target) is None


# -- the API on a PostgreSQL database -----------------------------------------------------------


def token_for(client: Client, label: str, username: str) -> str:
    response = client.post(
        f"/api/v1/databases/{label}/auth/token",
        {"username": username, "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()["token"]


def test_api_domain_endpoints_with_a_token_stored_in_the_postgresql_database(make_pg_database):
    target = make_pg_database(
        "api-pg", name="API PG", companies=["Acme PG"], users=[("ann", PASSWORD, True)]
    )
    client = Client()
    token = token_for(client, "api-pg", "ann")
    auth = {"Authorization": f"Token {token}"}
    listed = client.get("/api/v1/databases/api-pg/companies/", headers=auth)
    assert listed.status_code == 200
    assert [c["name"] for c in listed.json()["results"]] == ["Acme PG"]
    created = client.post(
        "/api/v1/databases/api-pg/companies/",
        {"name": "Made Through API", "country": "Finland"},
        content_type="application/json",
        headers=auth,
    )
    assert created.status_code == 201, created.content
    # In PostgreSQL itself: the company, and the token's digest (never the token).
    url = catalog.entry_for_target(target).url.url()
    with psycopg.connect(url) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM companies_company")}
        digests = [r[0] for r in conn.execute("SELECT digest FROM knox_authtoken")]
    assert names == {"Acme PG", "Made Through API"}
    assert len(digests) == 1 and token not in digests[0]
    assert client.get("/api/v1/databases/api-pg/companies/").status_code == 401
    assert client.delete("/api/v1/databases/api-pg/auth/token", headers=auth).status_code == 204
    assert client.get("/api/v1/databases/api-pg/companies/", headers=auth).status_code == 401


def test_a_file_token_is_not_valid_on_a_postgresql_database(make_database, make_pg_database):
    make_database(name="File", label="filedb", users=[("ann", PASSWORD, True)])
    make_pg_database("pgdb", name="PG", users=[("ann", PASSWORD, True)])
    client = Client()
    token = token_for(client, "filedb", "ann")
    response = client.get(
        "/api/v1/databases/pgdb/companies/", headers={"Authorization": f"Token {token}"}
    )
    assert response.status_code == 401


def test_api_refuses_unknown_and_removed_labels(make_pg_database):
    make_pg_database("short-lived", users=[("ann", PASSWORD, True)])
    client = Client()
    token = token_for(client, "short-lived", "ann")
    from dbselect.catalog import registry

    registry.remove("short-lived")
    response = client.get(
        "/api/v1/databases/short-lived/companies/", headers={"Authorization": f"Token {token}"}
    )
    assert response.status_code == 404
    assert client.get("/api/v1/databases/nowhere/companies/").status_code == 404


def test_api_catalog_lists_kind_and_location(make_database, make_pg_database, postgres_server):
    make_database(name="File DB", label="filedb")
    target = make_pg_database("pgdb", name="PG DB")
    make_pg_database("emptypg", migrated=False)
    body = Client().get("/api/v1/databases/").json()
    by_label = {e["label"]: e for e in body}
    dbname = catalog.entry_for_target(target).url.dbname
    assert by_label["filedb"]["kind"] == "sqlite" and by_label["filedb"]["location"] is None
    assert by_label["filedb"]["size"] > 0
    pg = by_label["pgdb"]
    assert pg["kind"] == "postgresql" and pg["state"] == "up_to_date"
    assert pg["display_name"] == "PG DB" and pg["size"] is None
    assert pg["location"] == f"127.0.0.1:{postgres_server.port}/{dbname}"
    assert by_label["emptypg"]["state"] == "invalid"
    password = dsn.parse(postgres_server.extra["url"]).password
    assert password not in str(body) and "postgres:" not in str(body)


def test_api_engines_lists_a_postgresql_engine_for_an_operator(make_database, make_pg_database):
    make_database(name="Default", label="default", users=[("root", PASSWORD, True)])
    target = make_pg_database("pgdb", name="PG DB", users=[("ann", PASSWORD, True)])
    client = Client()
    pg_token = token_for(client, "pgdb", "ann")
    pg_auth = {"Authorization": f"Token {pg_token}"}
    assert client.get("/api/v1/databases/pgdb/companies/", headers=pg_auth).status_code == 200
    # An admin of the PostgreSQL database is no operator.
    refused = client.get("/api/v1/databases/pgdb/engines/", headers=pg_auth)
    assert refused.status_code == 403
    token = token_for(client, "default", "root")
    auth = {"Authorization": f"Token {token}"}
    body = client.get("/api/v1/databases/default/engines/", headers=auth).json()
    row = next(e for e in body["engines"] if e["path"] == target)
    assert row["kind"] == "postgresql" and row["display_name"] == "PG DB"
    assert row["location"].startswith("postgresql://postgres:********@127.0.0.1:")
    disposed = client.post(
        "/api/v1/databases/default/engines/dispose",
        {"path": target},
        content_type="application/json",
        headers=auth,
    )
    assert disposed.status_code == 200 and disposed.json() == {"disposed": [target]}
    assert engines.get(target) is None


def test_api_current_and_the_slow_query_page_on_a_postgresql_session(make_pg_database):
    make_pg_database("cur", name="Current PG", companies=["Acme"], users=[("ann", PASSWORD, True)])
    client = Client()
    select(client, "postgresql:cur")
    sign_in(client, "ann", PASSWORD)
    listed = client.get("/api/v1/databases/current/companies/")
    assert listed.status_code == 200
    assert [c["name"] for c in listed.json()["results"]] == ["Acme"]
    assert client.get("/database/slow-queries").status_code == 200


def test_apitoken_command_on_a_postgresql_label(make_pg_database):
    from io import StringIO

    from django.core.management import call_command

    make_pg_database("ledger", users=[("ann", PASSWORD, True)], companies=["Ledger Co"])
    out, err = StringIO(), StringIO()
    call_command("apitoken", "ann", database="ledger", stdout=out, stderr=err)
    token = out.getvalue().strip()
    response = Client().get(
        "/api/v1/databases/ledger/companies/", headers={"Authorization": f"Token {token}"}
    )
    assert response.status_code == 200 and "Ledger Co" in response.content.decode()
