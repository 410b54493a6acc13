"""dbinspect, dbcheck and the details page (/database/) on a PostgreSQL database of the catalog,
on a real server: tables with exact row counts and pg_total_relation_size, the schema state,
one table in depth; the check reads every table and verifies every foreign key (rows written
with triggers disabled, NOT VALID constraints), audited in the database itself."""

from __future__ import annotations

import io
import json

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from huey.contrib.djhuey import HUEY

from audit.models import AuditEntry
from dbselect import catalog, engines, state
from inspection import jobs
from nukeworks.companies.models import Company, Project
from tests.helpers import select, sign_in

PASSWORD = "pw-insp-123"


@pytest.fixture(autouse=True)
def _clean(tmp_path, settings):
    HUEY.flush()
    yield
    HUEY.flush()
    for engine in engines.all():
        if not engine.is_file:
            engines.dispose(engine.target)


@pytest.fixture
def plant(make_pg_database) -> str:
    target = make_pg_database(
        "plant",
        name="Plant PG",
        companies=["Acme", "Bolt"],
        users=[("ann", PASSWORD, True), ("kim", PASSWORD, False)],
    )
    with state.override(engines.register(target).alias):
        Project.objects.create(name="Reactor 1", company=Company.objects.get(name="Acme"))
    return target


def run(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def superuser(plant: str) -> psycopg.Connection:
    """A connection to the plant's database as the catalog entry's user (a superuser here)."""
    return psycopg.connect(catalog.entry_for_target(plant).url.url(), autocommit=True)


def test_dbinspect_shows_tables_rows_sizes_and_schema(plant):
    out = run("dbinspect", "plant")
    assert "Database      postgresql:plant  (label plant)" in out
    assert "Display name  Plant PG" in out
    assert "Schema        Up to date" in out
    assert "(pg_database_size)" in out and "server 1" in out
    assert "sizes from pg_total_relation_size" in out
    assert "Pages" not in out and "journal mode" not in out
    line = next(x for x in out.splitlines() if x.startswith("companies_company "))
    assert line.split()[1] == "2" and "KB" in line
    # The same through postgresql:<label>, and as JSON with every exact count.
    data = json.loads(run("dbinspect", "postgresql:plant", "--json"))
    assert data["kind"] == "postgresql" and data["label"] == "plant"
    assert data["row_counts"]["companies_company"] == 2
    assert data["row_counts"]["companies_project"] == 1
    assert data["row_counts"]["accounts_user"] == 2
    assert data["schema_state"] == "up_to_date" and not data["incomplete"]
    assert all(t["bytes"] > 0 for t in data["tables"])
    assert any(i["name"].endswith("_pkey") and i["automatic"] for i in data["indexes"])
    assert catalog.entry_for_target(plant).url.password not in json.dumps(data)


def test_dbinspect_table_schema_and_triggers(plant):
    out = run("dbinspect", "plant", "--table", "companies_project", "--schema", "--triggers")
    assert "Table companies_project (table): 1 rows" in out
    assert "  company_id  bigint NOT NULL" in out or "  company_id  integer NOT NULL" in out
    assert "foreign key (company_id) -> companies_company (id)" in out
    assert "(primary key, unique): id" in out
    assert 'CREATE TABLE "companies_company" (' in out or "CREATE TABLE companies_company (" in out
    assert "CREATE UNIQUE INDEX" in out
    assert "Triggers (0; listed, never run):" in out
    with pytest.raises(CommandError, match="No table 'nope'"):
        run("dbinspect", "plant", "--table", "nope")


def test_dbinspect_names_the_registered_databases_for_an_unknown_label(plant):
    with pytest.raises(CommandError, match="Registered PostgreSQL databases: plant"):
        run("dbinspect", "nowhere")
    with pytest.raises(CommandError, match="No PostgreSQL database is registered as 'nowhere'"):
        run("dbinspect", "postgresql:nowhere")


def test_dbcheck_passes_a_sound_database_and_audits_it_there(plant):
    out = run("dbcheck", "plant", "--no-progress")
    assert "PostgreSQL database 127.0.0.1:" in out and "(label plant): ok" in out
    assert "read_check (every table read): ok" in out
    assert "foreign_key_check: ok" in out
    assert "No problems found." in out
    full = run("dbcheck", "plant", "--full", "--no-progress")
    assert "full_read_check (every table read, every value): ok" in full
    with state.override(engines.register(plant).alias):
        entries = list(AuditEntry.objects.filter(action="database.check"))
    assert len(entries) == 2 and all(e.outcome == "success" for e in entries)


def test_dbcheck_finds_rows_pointing_nowhere_and_not_valid_keys(plant, capsys):
    with superuser(plant) as conn:
        # As an import with triggers disabled would: the constraint never sees it.
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM companies_company WHERE name = 'Acme'")
        conn.execute("SET session_replication_role = DEFAULT")
        conn.execute(
            "ALTER TABLE companies_project ADD CONSTRAINT extra_fk FOREIGN KEY (company_id) "
            "REFERENCES companies_company (id) NOT VALID"
        )
    with pytest.raises(SystemExit) as exited:
        call_command("dbcheck", "plant", "--no-progress")
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "foreign key extra_fk is NOT VALID" in out
    # Both foreign keys (Django's and extra_fk) see the project pointing at no company.
    assert "foreign_key_check: 2 violation(s)" in out
    project_id = _project_id(plant)
    assert (
        f"companies_project row {project_id}: companies_project.company_id -> "
        "companies_company (no such row)" in out
    )
    assert "Problems found." in out


def _project_id(plant: str) -> int:
    with superuser(plant) as conn:
        return conn.execute("SELECT id FROM companies_project").fetchone()[0]


def test_dbcheck_reports_an_unreachable_server(make_pg_database):
    catalog.add("down", "postgresql://u:pw-secret@127.0.0.1:1/nowhere")
    with pytest.raises(SystemExit):
        call_command("dbcheck", "down", "--no-progress", stdout=(out := io.StringIO()))
    assert "cannot be reached" in out.getvalue()
    assert "pw-secret" not in out.getvalue()


# -- the details page ---------------------------------------------------------------------------


@pytest.fixture
def admin(plant) -> Client:
    client = Client()
    select(client, plant)
    assert sign_in(client, "ann", PASSWORD).status_code == 302
    return client


def test_details_page_shows_the_postgresql_database(admin, plant):
    page = admin.get("/database/")
    assert page.status_code == 200
    html = page.content.decode()
    inspection = page.context["inspection"]
    assert inspection.kind == "postgresql" and not inspection.incomplete
    assert inspection.table("companies_company").rows == 2
    assert '<section class="card" id="db-inspection" data-kind="postgresql">' in html
    assert "<h2>Inside the database</h2>" in html
    assert 'id="db-server"' in html and 'id="db-pages"' not in html
    assert "from pg_total_relation_size" in html
    assert '<tr data-table="companies_company"><td><code>companies_company</code></td>' in html
    assert "manage.py dbinspect plant --tables --triggers" in html
    assert "NOT VALID" in html  # the full check says what it does on PostgreSQL
    assert catalog.entry_for_target(plant).url.password not in html
    # The head of the page: validated through PostgreSQL, its size from the server.
    assert page.context["state"].value == "up_to_date" and page.context["problem"] == ""
    assert page.context["file_size"] > 0 and page.context["wal_size"] == 0
    assert "<th>Database</th>" in html and "No file exists" not in html


def test_details_page_full_check_runs_on_postgresql(admin, plant):
    assert admin.post("/database/check").status_code == 302
    status = jobs.read(plant)
    assert status is not None and status.state == jobs.QUEUED
    assert jobs.run(plant, status.job) == jobs.DONE  # what the queue's worker does
    done = admin.get("/database/check/status").json()
    assert done["state"] == "done" and done["ok"] is True
    assert done["summary"].startswith("full_read_check: ok")
    html = admin.get("/database/").content.decode()
    assert "No problems found" in html


def test_details_page_for_a_non_admin_is_refused(plant):
    client = Client()
    select(client, plant)
    sign_in(client, "kim", PASSWORD)
    assert client.get("/database/").status_code == 403
    assert client.post("/database/check").status_code == 403
