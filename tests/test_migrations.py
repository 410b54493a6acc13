"""Migrations per database: admin approval, snapshot first, nothing lost on failure."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest
from django.db import connections
from django.test import Client

from audit.models import AuditEntry
from dbselect import engines, state
from dbselect import session as db_session
from dbselect.files.schema import SchemaState, code_migrations
from dbselect.files.validation import inspect_database
from tests.helpers import dump_without_audit, messages_of, select, sign_in

ADMIN = ("root", "pw", True)
CLERK = ("clerk", "pw", False)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _signed_in(make_database, user=ADMIN, home: Path | None = None) -> Client:
    """A session signed in to "Home Base", databases/default of the test's folder (whose
    admins are operators, dbselect.permissions); `home` reuses an existing one."""
    client = Client()
    select(client, home or make_database(name="Home Base", users=[user], label="default"))
    sign_in(client, user[0], user[1])
    return client


def _audit(path: Path, action: str) -> list[tuple[str, str]]:
    with state.override(engines.register(str(path)).alias):
        rows = list(AuditEntry.objects.filter(action=action).values_list("outcome", "detail"))
    connections[engines.register(str(path)).alias].close()
    return rows


def test_admin_sees_the_plan_and_an_apply_button(make_database, make_old_database):
    client = _signed_in(make_database)
    old = make_old_database(users=[ADMIN])
    response = select(client, old)
    page = response.content.decode()
    assert response.status_code == 200
    assert "companies.0002_company_website" in page
    assert 'action="/select-db/migrate"' in page and "Apply migrations" in page
    assert client.session[db_session.SELECTED_NAME] == "Home Base"


def test_admin_applies_migrations_and_lands_on_the_database(make_database, make_old_database):
    client = _signed_in(make_database)
    old = make_old_database(users=[ADMIN])
    response = client.post("/select-db/migrate", {"path": str(old), "next": "/companies/"})
    assert response.status_code == 302
    assert response["Location"] == "/companies/"
    # A sign-in per database: the operator signs in to the migrated database to work on it.
    assert client.get("/companies/")["Location"].startswith("/login/")
    assert sign_in(client, ADMIN[0], ADMIN[1]).status_code == 302
    page = client.get("/companies/").content.decode()
    assert ">Legacy One</a>" in page and ">Legacy Two</a>" in page
    assert client.session[db_session.SELECTED_PATH] == str(old)
    assert inspect_database(str(old)).state is SchemaState.UP_TO_DATE
    snapshots = list((old.parent / "snapshots").glob("*.sqlite"))
    assert len(snapshots) == 1
    assert inspect_database(str(snapshots[0])).state is SchemaState.NEEDS_MIGRATION
    [(outcome, detail)] = _audit(old, "database.migrate")
    assert outcome == "success" and "companies.0002_company_website" in detail


def test_non_admin_is_blocked_and_the_file_is_untouched(make_database, make_old_database):
    client = _signed_in(make_database, CLERK)
    old = make_old_database(users=[CLERK])
    before = _digest(old)
    response = select(client, old)
    assert response.status_code == 403
    assert any(
        "needs migration" in m
        and "companies.0002_company_website" in m
        and "Only an operator can apply migrations" in m
        for m in messages_of(response)
    )
    assert "Apply migrations" not in response.content.decode()
    forced = client.post("/select-db/migrate", {"path": str(old)})
    assert forced.status_code == 403
    assert _digest(old) == before
    assert not (old.parent / "snapshots").exists()
    assert client.session[db_session.SELECTED_NAME] == "Home Base"


def test_anonymous_visitor_never_migrates(make_old_database):
    old = make_old_database()
    before = _digest(old)
    client = Client()
    assert select(client, old).status_code == 403
    assert client.post("/select-db/migrate", {"path": str(old)}).status_code == 403
    assert _digest(old) == before


def test_database_from_a_newer_version_is_refused_even_for_admins(make_database):
    client = _signed_in(make_database)
    newer = make_database(name="Future")
    conn = sqlite3.connect(newer)
    conn.execute(
        "INSERT INTO django_migrations (app, name, applied) VALUES ('companies', '0999_x', 'now')"
    )
    conn.commit()
    conn.close()
    before = _digest(newer)
    response = client.post("/select-db/migrate", {"path": str(newer)})
    assert response.status_code == 409
    assert any("never migrated backwards" in m for m in messages_of(response))
    assert _digest(newer) == before


def test_failed_migration_restores_the_file_and_shows_the_error(make_database, settings):
    client = _signed_in(make_database)
    target = make_database(name="Fragile", companies=["Keep Me"], users=[ADMIN])
    before = dump_without_audit(target)
    settings.MIGRATION_MODULES = {"companies": "tests.failing_migrations"}
    assert inspect_database(str(target)).pending == (("companies", "0003_fails_half_way"),)

    response = client.post("/select-db/migrate", {"path": str(target)})

    assert response.status_code == 422
    [banner] = [m for m in messages_of(response) if m.startswith("The database you chose")]
    assert banner.startswith(
        "The database you chose could not be opened; you are still working on Home Base. "
        "Reason: "
        "Migration failed: RuntimeError: simulated failure in the middle of a migration."
    )
    assert "restored from the snapshot" in banner
    assert dump_without_audit(target) == before
    conn = sqlite3.connect(target)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(companies_company)")]
    conn.close()
    assert "half_done" not in columns
    assert client.session[db_session.SELECTED_NAME] == "Home Base"
    [(outcome, _)] = _audit(target, "database.migrate")
    assert outcome == "failure"


def test_concurrent_approvals_run_the_migration_once(make_database, make_old_database):
    old = make_old_database(users=[ADMIN])
    home = make_database(name="Home Base", users=[ADMIN], label="default")
    clients = [_signed_in(make_database, home=home) for _ in range(2)]
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    notes: list[str] = []

    def approve(client: Client) -> None:
        barrier.wait()
        response = client.post("/select-db/migrate", {"path": str(old)}, follow=True)
        statuses.append(response.status_code)
        # Page text, not response.context: the test client's template signal is global, so
        # contexts of concurrent requests in other threads would leak into this one.
        notes.append(response.content.decode())
        connections.close_all()

    threads = [threading.Thread(target=approve, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 200]
    assert len(list((old.parent / "snapshots").glob("*.sqlite"))) == 1
    assert [o for o, _ in _audit(old, "database.migrate")] == ["success"]
    assert sum("Applied 3 migrations" in page for page in notes) == 1
    assert sum("already brought up to date" in page for page in notes) == 1


def test_schema_check_reuses_one_migration_graph(make_database):
    path = str(make_database())
    inspect_database(path)
    misses = code_migrations.cache_info().misses
    for _ in range(20):
        assert inspect_database(path).state is SchemaState.UP_TO_DATE
    assert code_migrations.cache_info().misses == misses


@pytest.mark.parametrize("state_name", ["needs_migration"])
def test_needs_migration_state_lists_pending_in_order(make_old_database, state_name):
    info = inspect_database(str(make_old_database()))
    assert info.state.value == state_name
    assert info.pending == (
        ("companies", "0002_company_website"),
        ("attachments", "0001_initial"),
        ("companies", "0003_list_indexes"),
    )
