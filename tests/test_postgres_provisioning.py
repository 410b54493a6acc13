"""New databases from seed packages on a PostgreSQL server (issue 17).

A real PostgreSQL server (tests/services.py) known from a catalog entry: an operator chooses it
on the "New database…" page, the job is queued in the real huey queue and run here as the
worker would (tests/test_provisioning.py does the same for files); the database is created on
the server, migrated, seeded, stamped ready and only then registered in the catalog, so it is
selectable once ready. A failed build drops what it made; rebuild and discard work as for
files; `manage.py createdb --postgres-url` builds one on a server given by URL.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import Client
from huey.contrib.djhuey import HUEY

from bundles import newdb
from dbselect import catalog, engines
from dbselect.catalog import postgres
from dbselect.conf import get_config
from dbselect.layout import PREPARING_MARKER
from nukeworks.companies.models import Company, Project
from provisioning import progress
from tests.helpers import select, sign_in
from tests.services import database_names

PASSWORD = "pw-prov-12345"
ADMIN_PASSWORD = "Very-long-admin-pw-1"


@pytest.fixture(autouse=True)
def _queue(tmp_path, settings):
    """An empty queue for each test."""
    settings.DBSELECT = {**settings.DBSELECT, "ENGINE_STORE_DIR": tmp_path / "engines"}
    HUEY.flush()
    yield
    HUEY.flush()


@pytest.fixture
def server(postgres_url):
    """The server's superuser URL; every nw_* database a test made is dropped afterwards."""
    return postgres_url


def run_queued() -> int:
    ran = 0
    while (task := HUEY.dequeue()) is not None:
        HUEY.execute(task)
        ran += 1
    return ran


def databases_dir() -> Path:
    return Path(get_config()["DATABASES_DIR"])


@pytest.fixture
def operator(make_database, make_pg_database, server) -> Client:
    """An operator's browser session, and a PostgreSQL database `pgbase` whose server new
    databases may be created on."""
    default = make_database(name="Default", label="default", users=[("root", PASSWORD, True)])
    make_pg_database("pgbase", name="PG Base")
    client = Client()
    select(client, default)
    assert sign_in(client, "root", PASSWORD).status_code == 302
    return client


def new_database_form(label: str, **extra: str) -> dict[str, str]:
    return {
        "label": label,
        "display_name": f"{label.title()} site",
        "seed": "starter@1",
        "server": "pgbase",
        "admin": "new",
        "admin_username": "boss",
        "admin_password": ADMIN_PASSWORD,
        "admin_password2": ADMIN_PASSWORD,
        **extra,
    }


def _counts(target: str) -> tuple[int, int]:
    alias = engines.register(target).alias
    try:
        return Company.objects.using(alias).count(), Project.objects.using(alias).count()
    finally:
        connections[alias].close()


def test_an_operator_creates_a_database_on_the_postgres_server_through_the_page(operator, server):
    page = operator.get("/select-db/new").content.decode()
    assert "PostgreSQL on" in page and "the server of “pgbase”" in page
    # No URL, host or password is typed or shown: the server is a catalog entry's.
    assert server.password not in page

    response = operator.post("/select-db/new", new_database_form("pgnew"))
    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == "/select-db/preparing/pgnew"
    # Queued: listed as being prepared, not in the catalog, nothing on the server yet.
    listed = operator.get("/select-db").content.decode()
    assert "Pgnew site" in listed and "being prepared" in listed
    assert catalog.get("pgnew") is None
    assert "nw_pgnew" not in database_names(server)
    assert operator.get("/select-db/preparing/pgnew/status").json()["state"] == "queued"
    request_file = (databases_dir() / "pgnew" / progress.REQUEST_FILE).read_text()
    assert server.password not in request_file and '"like": "pgbase"' in request_file

    assert run_queued() == 1
    status = operator.get("/select-db/preparing/pgnew/status").json()
    assert status["state"] == "ready", status
    entry = catalog.get("pgnew")
    assert entry is not None and entry.url.dbname == "nw_pgnew"
    assert (entry.url.host, entry.url.port) == (server.host, server.port)
    assert newdb.temp_dbname("nw_pgnew", "pgnew") not in database_names(server)
    assert not (databases_dir() / "pgnew" / PREPARING_MARKER).exists()
    assert (databases_dir() / "pgnew" / "snapshots").is_dir()
    info = postgres.inspect(entry.target, entry.url)
    assert info.seed_status == "ready" and info.display_name == "Pgnew site"
    assert _counts(entry.target) == (16, 14)

    # Selectable now: the progress page's continue form names the catalog target.
    html = operator.get("/select-db/preparing/pgnew").content.decode()
    assert 'value="postgresql:pgnew"' in html
    assert "postgresql:pgnew" in operator.get("/select-db").content.decode()
    fresh = Client()
    assert select(fresh, "postgresql:pgnew")["Location"] == "/login/"
    assert sign_in(fresh, "boss", ADMIN_PASSWORD).status_code == 302
    assert "Westinghouse Electric Company" in fresh.get("/companies/").content.decode()

    # The label is taken now, by the catalog.
    again = operator.post("/select-db/new", new_database_form("pgnew"))
    assert again.status_code == 409


def test_a_failed_build_drops_its_database_and_an_operator_rebuilds_it(
    operator, server, monkeypatch
):
    operator.post("/select-db/new", new_database_form("pgflaky"))
    real = newdb.apply

    def broken(*args, **kwargs):
        real(*args, **kwargs)  # the rows are in: the failure comes late
        raise newdb.BundleError("the disk said no")

    monkeypatch.setattr(newdb, "apply", broken)
    run_queued()
    status = operator.get("/select-db/preparing/pgflaky/status").json()
    assert status["state"] == "failed" and "the disk said no" in status["message"]
    assert not {"nw_pgflaky", newdb.temp_dbname("nw_pgflaky", "pgflaky")} & set(
        database_names(server)
    )
    assert catalog.get("pgflaky") is None
    assert not (databases_dir() / "pgflaky" / "payloads").exists()
    assert "preparation failed" in operator.get("/select-db").content.decode()
    page = operator.get("/select-db/preparing/pgflaky").content.decode()
    assert 'id="operator-actions"' in page

    monkeypatch.setattr(newdb, "apply", real)
    assert operator.post("/select-db/preparing/pgflaky/rebuild").status_code == 302
    assert run_queued() == 1
    assert progress.status("pgflaky").state == "ready"
    assert _counts("postgresql:pgflaky") == (16, 14)


def test_discard_drops_what_an_interrupted_build_left_on_the_server(operator, server):
    operator.post("/select-db/new", new_database_form("pgstop"))
    # A worker killed half-way: its temporary database is on the server, the marker says so.
    leftover = newdb.temp_dbname("nw_pgstop", "pgstop")
    postgres.create_database(server, leftover)
    progress.write(databases_dir() / "pgstop", state="building", job="dead", message="…")
    assert operator.get("/select-db/preparing/pgstop/status").json()["state"] == "interrupted"
    response = operator.post("/select-db/preparing/pgstop/discard")
    assert response.status_code == 302 and response["Location"] == "/select-db"
    assert leftover not in database_names(server)
    assert not (databases_dir() / "pgstop").exists()
    assert catalog.get("pgstop") is None
    # The queued job finds nothing to do.
    run_queued()
    assert "nw_pgstop" not in database_names(server)


def test_the_page_refuses_a_taken_database_name_and_an_unknown_server(operator, server):
    postgres.create_database(server, "nw_taken")
    taken = operator.post("/select-db/new", new_database_form("taken"))
    assert taken.status_code == 409
    assert "has a database named" in taken.content.decode()
    unknown = operator.post("/select-db/new", new_database_form("other", server="nope"))
    assert unknown.status_code == 400
    assert not (databases_dir() / "taken").exists() and not (databases_dir() / "other").exists()
    assert HUEY.pending_count() == 0


def test_createdb_on_a_server_given_by_url_and_its_retry(make_pg_database, server):
    url = server.with_dbname("nw_cmdpg").url()
    out = io.StringIO()
    with pytest.raises(CommandError, match="no --no-wait"):
        call_command("createdb", "cmdpg", "--postgres-url", url, "--no-wait")
    call_command(
        "createdb", "cmdpg", "--seed", "starter@1", "--postgres-url", url, "--admin", "boss",
        "--admin-password", ADMIN_PASSWORD, "--no-progress", stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    assert "postgresql:cmdpg" in out.getvalue()
    entry = catalog.get("cmdpg")
    assert entry is not None and entry.url.dbname == "nw_cmdpg"
    assert _counts(entry.target) == (16, 14)
    assert not (databases_dir() / "cmdpg" / PREPARING_MARKER).exists()
    assert not (databases_dir() / "cmdpg" / progress.REQUEST_FILE).exists()
    with pytest.raises(CommandError, match="exists already"):
        call_command("createdb", "cmdpg", "--postgres-url", url, "--no-progress")

    # --postgres-like: the server and credentials of an entry, a database name of one's own.
    make_pg_database("pgbase2", name="Base 2")
    call_command(
        "createdb", "likepg", "--empty", "--postgres-like", "pgbase2", "--postgres-dbname",
        "nw_likepg_custom", "--no-progress", stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip
    assert catalog.get("likepg").url.dbname == "nw_likepg_custom"
    assert _counts("postgresql:likepg") == (0, 0)
    with pytest.raises(CommandError, match="nothing else goes"):
        call_command("createdb", "x2", "--postgres-url", url, "--postgres-like", "pgbase2")


def test_createdb_retry_of_a_url_build_needs_the_url_again(server, monkeypatch):
    url = server.with_dbname("nw_cmdfail").url()
    real = newdb.apply

    def broken(*args, **kwargs):
        raise newdb.BundleError("the disk said no")

    monkeypatch.setattr(newdb, "apply", broken)
    with pytest.raises(CommandError, match="the disk said no"):
        call_command(
            "createdb", "cmdfail", "--seed", "starter@1", "--postgres-url", url,
            "--no-progress", stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip
    assert progress.status("cmdfail").state == "failed"
    assert not {"nw_cmdfail", newdb.temp_dbname("nw_cmdfail", "cmdfail")} & set(
        database_names(server)
    )
    # No password beside the database: the request records the URL without it.
    request_file = (databases_dir() / "cmdfail" / progress.REQUEST_FILE).read_text()
    assert server.password not in request_file and "nw_cmdfail" in request_file
    monkeypatch.setattr(newdb, "apply", real)
    with pytest.raises(CommandError, match="--retry --postgres-url"):
        call_command("createdb", "cmdfail", "--retry", "--no-progress", stderr=io.StringIO())
    other = server.with_dbname("nw_elsewhere").url()
    with pytest.raises(CommandError, match="--retry --postgres-url"):
        call_command(
            "createdb", "cmdfail", "--retry", "--postgres-url", other, "--no-progress",
            stderr=io.StringIO(),
        )  # fmt: skip
    call_command(
        "createdb", "cmdfail", "--retry", "--postgres-url", url, "--no-progress",
        stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip
    assert progress.status("cmdfail").state == "ready"
    assert _counts("postgresql:cmdfail") == (16, 14)


def test_an_operator_creates_a_postgres_database_through_the_api(operator, server):
    token = (
        Client()
        .post(
            "/api/v1/databases/default/auth/token",
            {"username": "root", "password": PASSWORD},
            content_type="application/json",
        )
        .json()["token"]
    )
    headers = {"Authorization": f"Token {token}"}
    created = Client().post(
        "/api/v1/databases/default/databases/",
        {
            "label": "apipg",
            "seed": "starter@1",
            "postgres_like": "pgbase",
            "admin": {"username": "boss", "password": ADMIN_PASSWORD},
        },
        content_type="application/json",
        headers=headers,
    )
    assert created.status_code == 202, created.content
    assert run_queued() == 1
    entry = catalog.get("apipg")
    assert entry is not None and entry.url.dbname == "nw_apipg"
    assert _counts(entry.target) == (16, 14)
    unknown = Client().post(
        "/api/v1/databases/default/databases/",
        {"label": "apinope", "postgres_like": "nowhere"},
        content_type="application/json",
        headers=headers,
    )
    assert unknown.status_code == 400 and "nowhere" in unknown.content.decode()
    assert catalog.get("apinope") is None
