"""PostgreSQL databases as catalog entries, on a real PostgreSQL server: `manage.py catalog`,
the operators' catalog page (/catalog/), selecting one by label and working on it, a typed URL
refused without any connection, removal (sessions fall back), `migrate --database <label>`."""

from __future__ import annotations

import io
import logging
import re
import socket
import sys
import time

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from audit.models import AuditEntry
from dbselect import catalog, engines, state
from dbselect.catalog import dsn
from nukeworks.companies.models import Company
from tests.helpers import messages_of, select, sign_in

PASSWORD = "s3cret-Catalog-pw"


@pytest.fixture
def server(postgres_server) -> dsn.PostgresURL:
    return dsn.parse(postgres_server.extra["url"])


@pytest.fixture
def nw_user(server):
    """A non-superuser role with a password of our own (the URL the tests register)."""
    role = "nw_catalog_user"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}' CREATEDB")
    return role


@pytest.fixture
def unregistered(make_pg_database, server, nw_user):
    """A migrated NukeWorks database on the server, not in the catalog; its URL (our role)."""
    target = make_pg_database("scratch", name="Scratch PG", companies=["Acme"])
    entry = catalog.entry_for_target(target)
    catalog.remove("scratch")
    engines.dispose(target)
    with psycopg.connect(server.with_dbname(entry.url.dbname).url(), autocommit=True) as conn:
        conn.execute(f"GRANT ALL ON DATABASE {entry.url.dbname} TO {nw_user}")
        conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {nw_user}")
        conn.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {nw_user}")
    return dsn.PostgresURL(nw_user, PASSWORD, server.host, server.port, entry.url.dbname).url()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text


# -- manage.py catalog --------------------------------------------------------------------------


def test_command_adds_lists_and_removes(unregistered, caplog):
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    call_command("catalog", "add", "plant-pg", unregistered, "--display-name", "Plant", stdout=out)
    assert "Registered plant-pg: postgresql://nw_catalog_user:********@" in out.getvalue()
    assert "(up to date)" in out.getvalue()
    assert catalog.get("plant-pg") is not None
    assert engines.cache().get("postgresql:plant-pg") is not None  # a connection alias now

    listing = io.StringIO()
    call_command("catalog", "list", "--check", stdout=listing)
    row = next(line for line in listing.getvalue().splitlines() if line.startswith("plant-pg"))
    assert "Plant" in row and "********" in row and row.endswith("up to date")

    removed = io.StringIO()
    call_command("catalog", "remove", "plant-pg", stdout=removed)
    assert "Removed plant-pg" in removed.getvalue()
    assert catalog.get("plant-pg") is None
    with pytest.raises(CommandError, match="No database is registered as 'plant-pg'"):
        call_command("catalog", "remove", "plant-pg")

    _no_password(out.getvalue(), listing.getvalue(), removed.getvalue(), caplog.text)
    audits = [r.getMessage() for r in caplog.records if r.name == "nukeworks.audit"]
    assert any("catalog.add" in a and "********" in a for a in audits)
    assert any("catalog.remove" in a for a in audits)


def test_command_reads_the_url_from_stdin(unregistered, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(unregistered + "\n"))
    out = io.StringIO()
    call_command("catalog", "add", "from-stdin", "-", stdout=out)
    assert catalog.get("from-stdin").url.password == PASSWORD
    _no_password(out.getvalue())


@pytest.mark.parametrize(
    ("label", "url", "message"),
    [
        ("bad label", "{good}", "A label is 1 to 40"),
        ("ok", "mysql://u:{pw}@127.0.0.1/db", "Only postgresql:// URLs"),
        ("ok", "postgresql://u:{pw}@127.0.0.1:{closed}/db", "cannot be reached"),
        ("ok", "{wrong}", "refused the catalog entry's user name or password"),
        ("ok", "postgresql://u:{pw}@127.0.0.1/db?sslcert=/etc/passwd", "Unsupported URL"),
    ],
)
def test_command_refuses_and_stores_nothing(unregistered, caplog, label, url, message):
    caplog.set_level(logging.DEBUG)
    url = url.format(
        good=unregistered,
        pw=PASSWORD,
        closed=closed_port(),
        wrong=unregistered.replace(PASSWORD, PASSWORD + "-wrong"),
    )
    with pytest.raises(CommandError, match=re.escape(message)) as raised:
        call_command("catalog", "add", label, url, stdout=io.StringIO())
    assert catalog.entries() == []
    _no_password(str(raised.value), caplog.text)


# -- the catalog page ---------------------------------------------------------------------------


@pytest.fixture
def operator(make_database) -> Client:
    """An admin signed in to databases/default of the test's folder (an operator)."""
    default = make_database(name="Default", users=[("root", "pw-root-123", True)], label="default")
    client = Client()
    select(client, default)
    assert sign_in(client, "root", "pw-root-123").status_code == 302
    return client


def test_the_page_is_for_operators_only(make_database, unregistered):
    anonymous = Client()
    assert anonymous.get("/catalog/").status_code == 302  # no database yet: to the selector
    mine = make_database(name="Mine", users=[("admin", "pw-admin-123", True)])
    select(anonymous, mine)
    assert anonymous.get("/catalog/").status_code == 403
    outsider = Client()
    select(outsider, mine)
    sign_in(outsider, "admin", "pw-admin-123")
    assert outsider.get("/catalog/").status_code == 403
    for client in (anonymous, outsider):
        response = client.post("/catalog/", {"label": "sneaky", "url": unregistered})
        assert response.status_code == 403
    catalog.add("kept", unregistered)
    assert outsider.post("/catalog/kept/remove").status_code == 403
    assert [e.label for e in catalog.entries()] == ["kept"]
    assert "catalog-link" not in outsider.get("/").content.decode()


def test_operator_lists_entries_with_their_live_state(operator, make_pg_database, unregistered):
    make_pg_database("fresh", name="Fresh PG")
    catalog.add("down", f"postgresql://u:{PASSWORD}@127.0.0.1:{closed_port()}/nowhere")
    make_pg_database("empty", migrated=False)
    assert 'class="catalog-link"' in operator.get("/").content.decode()
    started = time.monotonic()
    html = operator.get("/catalog/").content.decode()
    assert time.monotonic() - started < 10
    _no_password(html)
    rows = dict(re.findall(r'data-label="([\w-]+)" data-state="(\w+)"', html))
    assert rows == {"down": "unreachable", "empty": "unusable", "fresh": "up_to_date"}
    assert "Fresh PG" in html
    assert "cannot be reached" in html
    assert "postgresql://u:********@127.0.0.1:" in html
    assert "manage.py migrate --database empty" in html


def test_operator_adds_an_entry_with_csrf(make_database, unregistered):
    default = make_database(name="Default", users=[("root", "pw-root-123", True)], label="default")
    client = Client(enforce_csrf_checks=True)
    select(client, default, **_csrf(client, "/select-db"))
    sign_in_page = _csrf(client, "/login/")
    client.post("/login/", {"username": "root", "password": "pw-root-123", **sign_in_page})
    form = {"label": "added", "url": unregistered, "display_name": "Added PG"}
    assert client.post("/catalog/", form).status_code == 403  # no CSRF token
    assert catalog.get("added") is None
    response = client.post("/catalog/", {**form, **_csrf(client, "/catalog/")}, follow=True)
    assert response.status_code == 200
    assert any("Registered added" in m for m in messages_of(response))
    entry = catalog.get("added")
    assert entry is not None and entry.display_name == "Added PG"
    html = response.content.decode()
    assert 'data-label="added" data-state="up_to_date"' in html
    _no_password(html)
    audit = AuditEntry.objects.using(engines.get(str(default)).alias).get(action="catalog.add")
    assert audit.target == "postgresql:added" and "********" in audit.detail
    _no_password(audit.detail)


def _csrf(client: Client, url: str) -> dict[str, str]:
    html = client.get(url).content.decode()
    return {
        "csrfmiddlewaretoken": re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)[1]
    }


def test_refused_add_stores_nothing_and_never_echoes_the_url(operator, unregistered, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = unregistered.replace(PASSWORD, PASSWORD + "-wrong")
    response = operator.post("/catalog/", {"label": "nope", "url": wrong})
    assert response.status_code == 400
    html = response.content.decode()
    assert "refused the catalog entry&#x27;s user name or password" in html
    assert catalog.entries() == []
    _no_password(html, caplog.text)
    assert wrong not in html
    assert 'name="url"' in html and 'value="postgresql' not in html
    assert "postgresql://nw_catalog_user:********@" in html  # what was typed, redacted
    # A form error (bad label) keeps the URL out too.
    response = operator.post("/catalog/", {"label": "bad label", "url": unregistered})
    assert response.status_code == 400
    _no_password(response.content.decode())
    assert catalog.entries() == []


def test_operator_removes_an_entry_after_confirming(operator, make_pg_database):
    target = make_pg_database("going", name="Going PG")
    page = operator.get("/catalog/going/remove")
    assert page.status_code == 200
    assert "Remove going from the catalog?" in page.content.decode()
    assert ":********@" in page.content.decode()
    assert catalog.get("going") is not None  # GET removes nothing
    response = operator.post("/catalog/going/remove", follow=True)
    assert any("Removed going" in m for m in messages_of(response))
    assert catalog.get("going") is None
    assert engines.get(target) is None
    assert operator.get("/catalog/going/remove").status_code == 404
    assert operator.get("/catalog/..%2F/remove").status_code == 404


# -- selecting and working on a PostgreSQL database ---------------------------------------------


def test_a_typed_url_is_refused_without_connecting(make_database):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        client = Client()
        for url in (
            f"postgresql://postgres:x@127.0.0.1:{port}/postgres",
            f"postgres://postgres:x@127.0.0.1:{port}/postgres",
            f"  POSTGRESQL://postgres@127.0.0.1:{port}/postgres",
            f"postgresql://127.0.0.1:{port}",
        ):
            response = select(client, url)
            assert response.status_code in (200, 400)
            assert "not opened from a typed URL" in response.content.decode()
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert catalog.entries() == []


def test_select_by_label_sign_in_create_and_read_back(make_pg_database):
    target = make_pg_database("works", name="Works PG", users=[("kim", "pw-kim-123", False)])
    client = Client()
    listing = client.get("/select-db").content.decode()
    assert 'value="postgresql:works"' in listing and "PostgreSQL" in listing
    assert select(client, "postgresql:works").status_code == 302
    assert sign_in(client, "kim", "pw-kim-123").status_code == 302
    home = client.get("/").content.decode()
    assert "Works PG" in home and 'class="badge db-kind">PostgreSQL' in home
    response = client.post(
        "/companies/new/", {"name": "Borealis Nuclear", "country": "Norway", "website": ""}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert "Borealis Nuclear" in client.get("/companies/").content.decode()
    with state.override(engines.get(target).alias):
        assert Company.objects.get(name="Borealis Nuclear").country == "Norway"
    # The row is in PostgreSQL itself.
    entry = catalog.entry_for_target(target)
    with psycopg.connect(entry.url.url()) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM companies_company")]
    assert names == ["Borealis Nuclear"]


def test_removed_entry_makes_its_sessions_fall_back(make_database, make_pg_database):
    before = make_database(name="Plant File", users=[("kim", "pw-kim-123", False)])
    make_pg_database("leaving", name="Leaving PG", users=[("kim", "pw-kim-123", False)])
    client = Client()
    select(client, before)
    sign_in(client, "kim", "pw-kim-123")
    select(client, "postgresql:leaving")
    sign_in(client, "kim", "pw-kim-123")
    assert "Leaving PG" in client.get("/").content.decode()
    from dbselect.catalog import registry

    assert registry.remove("leaving")
    response = client.get("/companies/", follow=True)
    text = " ".join(messages_of(response))
    assert "could not be opened. Reverted to Plant File" in text
    assert "no longer in the catalog" in text
    assert "Plant File" in response.content.decode()


def test_migrate_database_label_makes_an_empty_database_selectable(make_pg_database):
    target = make_pg_database("blank", migrated=False)
    client = Client()
    refused = select(client, target)
    assert refused.status_code == 400
    assert "not a NukeWorks one" in refused.content.decode()
    # What manage.py's start-up does for every catalog entry (DbSelectConfig.ready).
    engines.register(target)
    call_command("migrate", database="blank", verbosity=0, interactive=False)
    out = io.StringIO()
    call_command("ensureadmin", database="blank", username="first", stdout=out)
    password = re.search(r"password: (\S+)", out.getvalue())[1]
    client = Client()
    assert select(client, target).status_code == 302
    assert sign_in(client, "first", password).status_code == 302
    assert client.get("/companies/").status_code == 200
