"""Migrations of PostgreSQL databases of the catalog: approved on the page, a pg_dump snapshot
first, and a run that fails half-way leaves the database exactly as it was (real server)."""

from __future__ import annotations

import psycopg
import pytest
from django.core.management import call_command
from django.db import connections
from django.test import Client

from audit.models import AuditEntry
from dbselect import catalog, engines, state
from dbselect import session as db_session
from dbselect.catalog import postgres
from dbselect.files.schema import SchemaState
from migrating import service as migrating
from snapshots import service as snapshots
from tests.helpers import add_rows, messages_of, select, sign_in
from tests.services import database_names

ADMIN = ("root", "pw-root-12345", True)


def _url(target: str):
    entry = catalog.entry_for_target(target)
    assert entry is not None
    return entry.url


def _query(target: str, query: str, params=()) -> list[tuple]:
    with psycopg.connect(**_url(target).libpq_params()) as conn:
        return conn.execute(query, params).fetchall()


def _schema_and_rows(target: str) -> dict[str, object]:
    """Every column of every table, the applied migrations and the companies."""
    return {
        "columns": _query(
            target,
            "SELECT table_name, column_name, data_type, is_nullable FROM "
            "information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
        ),
        "migrations": _query(target, "SELECT app, name FROM django_migrations ORDER BY id"),
        "companies": _query(target, "SELECT * FROM companies_company ORDER BY id"),
    }


def _work_databases(target: str) -> list[str]:
    return database_names(_url(target), _url(target).dbname + "__%")


def _audit(target: str) -> list[tuple[str, str]]:
    alias = engines.register(target).alias
    with state.override(alias):
        rows = list(
            AuditEntry.objects.filter(action="database.migrate").values_list("outcome", "detail")
        )
    connections[alias].close()
    return rows


def _old_pg_database(make_pg_database, label: str) -> str:
    """A PostgreSQL database whose `companies` app is one migration behind the code."""
    target = make_pg_database(label, migrated=False)
    alias = engines.register(target).alias
    with state.override(alias):
        call_command("migrate", database=alias, verbosity=0, interactive=False)
        call_command("migrate", "companies", "0001_initial", database=alias, verbosity=0)
    connections[alias].close()
    add_rows(target, name="Old PG", users=[ADMIN])
    with psycopg.connect(**_url(target).libpq_params(), autocommit=True) as conn:
        for name in ("Legacy One", "Legacy Two"):
            conn.execute(
                "INSERT INTO companies_company (name, is_vendor, is_owner, is_operator, "
                "is_constructor, country, notes, created_at, updated_at) "
                "VALUES (%s, false, true, false, false, '', '', now(), now())",
                (name,),
            )
    engines.dispose(target)
    return target


@pytest.fixture
def operator(make_database) -> Client:
    """A session signed in to databases/default (its admins are operators)."""
    client = Client()
    select(client, make_database(name="Home Base", users=[ADMIN], label="default"))
    sign_in(client, ADMIN[0], ADMIN[1])
    return client


def test_selector_shows_the_plan_and_the_admin_migrates_with_a_snapshot_first(
    operator, make_pg_database
):
    target = _old_pg_database(make_pg_database, "oldpg")
    assert migrating.plan_for(target).state is SchemaState.NEEDS_MIGRATION

    page = select(operator, target).content.decode()
    assert "companies.0002_company_website" in page and "Apply migrations" in page
    assert f'value="{target}"' in page

    response = operator.post("/select-db/migrate", {"path": target, "next": "/companies/"})
    assert response.status_code == 302, messages_of(response)
    assert response["Location"] == "/companies/"
    assert migrating.plan_for(target).state is SchemaState.UP_TO_DATE
    assert operator.session[db_session.SELECTED_PATH] == target
    # The rows are all there, in the migrated schema (the new column exists).
    assert _query(target, "SELECT name, website FROM companies_company ORDER BY id") == [
        ("Legacy One", ""),
        ("Legacy Two", ""),
    ]
    [snapshot] = snapshots.list_snapshots(target)
    assert snapshot.name.endswith(".pgdump") and snapshot.kind == "pre-migration"
    assert snapshot.schema_state == SchemaState.NEEDS_MIGRATION.value
    assert _work_databases(target) == []
    [(outcome, detail)] = _audit(target)
    assert outcome == "success" and "companies.0002_company_website" in detail
    # Signed in there, the admin works on the migrated database.
    assert sign_in(operator, ADMIN[0], ADMIN[1]).status_code == 302
    page = operator.get("/companies/").content.decode()
    assert "Legacy One" in page and "Legacy Two" in page


def test_a_run_that_fails_half_way_leaves_the_database_exactly_as_it_was(
    operator, make_pg_database, settings
):
    # Two migrations pending: 0002 succeeds, 0003 fails after its first operation.
    target = _old_pg_database(make_pg_database, "fragilepg")
    before = _schema_and_rows(target)
    settings.MIGRATION_MODULES = {"companies": "tests.failing_migrations"}
    assert ("companies", "0003_fails_half_way") in migrating.plan_for(target).pending

    response = operator.post("/select-db/migrate", {"path": target})

    assert response.status_code == 422
    [banner] = [m for m in messages_of(response) if "Migration failed" in m]
    assert "simulated failure in the middle of a migration" in banner
    assert "exactly as it was; nothing was lost" in banner
    assert _schema_and_rows(target) == before
    columns = {c for t, c, *_ in before["columns"] if t == "companies_company"}
    assert "website" not in columns and "half_done" not in columns
    assert _work_databases(target) == []
    assert [s.kind for s in snapshots.list_snapshots(target)] == ["pre-migration"]
    [(outcome, detail)] = _audit(target)
    assert outcome == "failure" and "the database is as it was" in detail
    assert operator.session[db_session.SELECTED_NAME] == "Home Base"


def test_migrate_all_covers_catalog_entries(make_pg_database, capsys):
    target = _old_pg_database(make_pg_database, "batchpg")
    call_command("migrate_all", "--no-progress")
    out = capsys.readouterr().out
    assert f"Migrated: {target}" in out and "1 migrated" in out
    assert migrating.plan_for(target).state is SchemaState.UP_TO_DATE
    assert "password" not in out.lower() and _url(target).password not in out


def _api(label: str):
    response = Client().post(
        f"/api/v1/databases/{label}/auth/token",
        {"username": ADMIN[0], "password": ADMIN[1]},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    headers = {"Authorization": f"Token {response.json()['token']}"}
    base = f"/api/v1/databases/{label}/migrations/"
    client = Client()
    return (
        lambda: client.get(base, headers=headers),
        lambda: client.post(base, {}, content_type="application/json", headers=headers),
    )


def test_the_api_applies_the_plan_and_reports_a_failed_run(make_pg_database, settings):
    target = _old_pg_database(make_pg_database, "apipg")
    plan, apply = _api("apipg")
    assert plan().json()["state"] == "needs_migration"
    applied = apply()
    assert applied.status_code == 200, applied.content
    assert applied.json()["snapshot"].endswith(".pgdump")
    assert plan().json() == {"state": "up_to_date", "pending": []}

    settings.MIGRATION_MODULES = {"companies": "tests.failing_migrations"}
    before = _schema_and_rows(target)
    failed = apply()
    assert failed.status_code == 422
    error = failed.json()["error"]
    assert error["detail"]["restored"] is True
    assert "exactly as it was; nothing was lost" in error["message"]
    assert _schema_and_rows(target) == before and _work_databases(target) == []


def test_a_swap_the_server_cannot_vouch_for_is_never_called_harmless(
    operator, make_pg_database, monkeypatch
):
    """The connection breaks during the swap and the server cannot be asked whether it
    committed: the admin is told the truth (the database is live or kept aside, nothing is
    lost), never that it is untouched."""
    from snapshots import pg

    target = _old_pg_database(make_pg_database, "unsurepg")

    def broken_swap(*args, **kwargs):
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(pg, "swap", broken_swap)
    monkeypatch.setattr(pg, "swap_committed", lambda url, old: None)
    response = operator.post("/select-db/migrate", {"path": target})
    assert response.status_code == 422
    [banner] = [m for m in messages_of(response) if "Migration failed" in m]
    assert "cannot say whether the migrated copy took the database's place" in banner
    assert "Nothing is lost" in banner and "exactly as it was" not in banner
    [(outcome, detail)] = _audit(target)
    assert outcome == "failure" and "cannot say" in detail
    # Nothing was dropped on a guess: the migrated copy is still on the server (removed here).
    monkeypatch.undo()
    leftovers = _work_databases(target)
    assert leftovers
    for name in leftovers:
        postgres.drop_database(_url(target), name)
