"""New databases from seed packages, built by a queue job, behind a readiness gate.

Through the selector's pages, `manage.py createdb` and the API, on real files: the job is
queued in the real huey queue (the SQLite file of the test instance folder) and run here by
dequeuing it, as the worker would (a real worker process: tests/test_provisioning_worker.py).
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache, caches
from django.core.management import CommandError, call_command
from django.test import Client
from huey.contrib.djhuey import HUEY

from dbselect.conf import get_config
from dbselect.layout import PREPARING_MARKER
from provisioning import progress, service
from tests.helpers import messages_of, select, sign_in

PASSWORD = "pw-prov-12345"
ADMIN_PASSWORD = "Very-long-admin-pw-1"
SEED = Path(settings.BASE_DIR) / "seeds" / "starter" / "1" / "data"


@pytest.fixture(autouse=True)
def _empty_queue(tmp_path, settings):
    """Each test starts with an empty queue, and throttle and sign-in budgets of its own
    (failed sign-ins of earlier tests count against this address)."""
    settings.DBSELECT = {**settings.DBSELECT, "ENGINE_STORE_DIR": tmp_path / "engines"}
    HUEY.flush()
    cache.clear()
    caches["ratelimit"].clear()
    yield
    HUEY.flush()
    cache.clear()


def run_queued() -> int:
    """Run every queued job here, as a worker would; return how many ran."""
    ran = 0
    while (task := HUEY.dequeue()) is not None:
        HUEY.execute(task)
        ran += 1
    return ran


def databases_dir() -> Path:
    return Path(get_config()["DATABASES_DIR"])


def package_rows() -> tuple[set[str], set[tuple[str, str]], set[int]]:
    """The starter package: company names, (project, its company's name), every key."""
    companies = [json.loads(line) for line in (SEED / "companies.company.jsonl").open()]
    projects = [json.loads(line) for line in (SEED / "companies.project.jsonl").open()]
    names = {c["id"]: c["name"] for c in companies}
    keys = set(names) | {p["id"] for p in projects}
    return set(names.values()), {(p["name"], names[p["company_id"]]) for p in projects}, keys


def file_rows(path: Path) -> tuple[set[str], set[tuple[str, str]], set[int]]:
    conn = sqlite3.connect(path)
    try:
        names = dict(conn.execute("SELECT id, name FROM companies_company").fetchall())
        projects = conn.execute("SELECT id, name, company_id FROM companies_project").fetchall()
    finally:
        conn.close()
    keys = set(names) | {p[0] for p in projects}
    return set(names.values()), {(name, names[company]) for _, name, company in projects}, keys


def assert_holds_the_starter_package(path: Path) -> None:
    companies, projects, package_keys = package_rows()
    got_companies, got_projects, keys = file_rows(path)
    assert got_companies == companies and len(companies) == 16
    assert got_projects == projects and len(projects) == 14
    # New keys everywhere: none of the package's (70001+, 950001+) leaked.
    assert not keys & package_keys


def settings_of(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM system_settings").fetchall())
    finally:
        conn.close()


def audit_rows(path: Path, action: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT outcome, username FROM audit_auditentry WHERE action = ? ORDER BY id", (action,)
        ).fetchall()
    finally:
        conn.close()


def password_hash(path: Path, username: str) -> str | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT password FROM accounts_user WHERE username = ?", (username,)
        ).fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def is_superuser(path: Path, username: str) -> bool:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT is_superuser FROM accounts_user WHERE username = ?", (username,)
        ).fetchone()
    finally:
        conn.close()
    return bool(row and row[0])


@pytest.fixture
def operator(make_database) -> tuple[Client, Path]:
    """A browser session signed in as an admin of databases/default (an operator)."""
    default = make_database(name="Default", label="default", users=[("root", PASSWORD, True)])
    client = Client()
    select(client, default)
    assert sign_in(client, "root", PASSWORD).status_code == 302
    return client, default


def new_database_form(label: str, **extra: str) -> dict[str, str]:
    return {
        "label": label,
        "display_name": f"{label.title()} site",
        "seed": "starter@1",
        "admin": "new",
        "admin_username": "boss",
        "admin_password": ADMIN_PASSWORD,
        "admin_password2": ADMIN_PASSWORD,
        **extra,
    }


# --- the selector's pages -------------------------------------------------------------------


def test_an_operator_creates_a_database_from_the_starter_package_through_the_page(operator):
    client, default = operator
    selector = client.get("/select-db").content.decode()
    assert 'id="new-database"' in selector
    page = client.get("/select-db/new")
    assert page.status_code == 200
    assert "starter@1" in page.content.decode()

    response = client.post("/select-db/new", new_database_form("acme"))
    assert response.status_code == 302
    assert response["Location"] == "/select-db/preparing/acme"
    path = databases_dir() / "acme" / "nukeworks.sqlite"
    assert not path.exists()
    # Queued: listed as being prepared, followed by its page, not served anywhere.
    listed = client.get("/select-db").content.decode()
    assert "Acme site" in listed and "being prepared" in listed
    assert 'href="/select-db/preparing/acme"' in listed
    status = client.get("/select-db/preparing/acme/status").json()
    assert status["state"] == "queued" and status["label"] == "acme"
    # The request was audited in the operator's database.
    assert ("queued", "root") in audit_rows(default, "database.create")

    assert run_queued() == 1
    assert client.get("/select-db/preparing/acme/status").json()["state"] == "ready"
    assert path.exists() and not (path.parent / PREPARING_MARKER).exists()
    assert_holds_the_starter_package(path)
    stamps = settings_of(path)
    assert stamps["seed_status"] == "ready" and stamps["seed_name"] == "starter"
    assert stamps["seed_version"] == "1" and stamps["db_display_name"] == "Acme site"
    assert ("success", "root") in audit_rows(path, "database.create")
    # The first admin signs in with the password given on the form.
    fresh = Client()
    assert select(fresh, path).status_code == 302
    assert sign_in(fresh, "boss", ADMIN_PASSWORD).status_code == 302
    assert "Westinghouse Electric Company" in fresh.get("/companies/").content.decode()


def test_copy_my_current_login_copies_username_and_password_hash(operator):
    client, default = operator
    page = client.get("/select-db/new").content.decode()
    assert "Copy my current login (root" in page
    form = new_database_form("copied", admin="copy", admin_username="", admin_password="")
    assert client.post("/select-db/new", form).status_code == 302
    run_queued()
    path = databases_dir() / "copied" / "nukeworks.sqlite"
    assert password_hash(path, "root") == password_hash(default, "root") is not None
    assert is_superuser(path, "root")
    other = Client()
    select(other, path)
    assert sign_in(other, "root", PASSWORD).status_code == 302


def test_selecting_a_database_being_prepared_shows_its_progress_page(operator):
    client, _ = operator
    client.post("/select-db/new", new_database_form("later"))
    path = databases_dir() / "later" / "nukeworks.sqlite"
    visitor = Client()
    chosen = visitor.post("/select-db", {"choice": str(path)})
    assert chosen.status_code == 302 and chosen["Location"] == "/select-db/preparing/later"
    page = visitor.get(chosen["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-status-url="/select-db/preparing/later/status"' in html
    assert 'data-state="queued"' in html
    assert "/static/provisioning/progress.js" in html and "<script>" not in html
    # The continue form selects the database once it is ready (hidden until then).
    assert 'id="continue-form" hidden' in html
    # Anonymous visitors follow it, but may not rebuild or discard it.
    assert 'id="operator-actions"' not in html
    run_queued()
    ready = visitor.get("/select-db/preparing/later").content.decode()
    assert 'data-state="ready"' in ready and 'id="continue-form" hidden' not in ready
    assert visitor.post("/select-db", {"choice": str(path)})["Location"] == "/login/"


def test_the_form_refuses_an_existing_label_a_bad_label_and_a_weak_password(operator):
    client, _ = operator
    taken = client.post("/select-db/new", new_database_form("default"))
    assert taken.status_code == 409
    assert "exists already" in taken.content.decode()
    bad = client.post("/select-db/new", new_database_form("../up"))
    assert bad.status_code == 400
    weak = client.post("/select-db/new", new_database_form("weak", admin_password="123"))
    assert weak.status_code == 400
    assert sorted(p.name for p in databases_dir().iterdir()) == ["default"]
    assert HUEY.pending_count() == 0


def test_a_failed_build_leaves_no_file_and_an_operator_rebuilds_it(operator, monkeypatch):
    client, _ = operator
    client.post("/select-db/new", new_database_form("flaky"))
    from bundles import newdb

    real = newdb.build_new_database

    def broken(*args, **kwargs):
        raise newdb.BundleError("the disk said no")

    monkeypatch.setattr(newdb, "build_new_database", broken)
    run_queued()
    path = databases_dir() / "flaky" / "nukeworks.sqlite"
    assert not path.exists()
    status = client.get("/select-db/preparing/flaky/status").json()
    assert status["state"] == "failed" and "the disk said no" in status["message"]
    listed = client.get("/select-db").content.decode()
    assert "preparation failed" in listed
    page = client.get("/select-db/preparing/flaky").content.decode()
    assert 'id="operator-actions"' in page

    monkeypatch.setattr(newdb, "build_new_database", real)
    rebuilt = client.post("/select-db/preparing/flaky/rebuild")
    assert rebuilt.status_code == 302
    assert client.get("/select-db/preparing/flaky/status").json()["state"] == "queued"
    run_queued()
    assert_holds_the_starter_package(path)


def test_a_superseded_job_does_nothing(operator):
    client, _ = operator
    client.post("/select-db/new", new_database_form("twice"))
    first = progress.status("twice").job
    # A rebuild while still queued: the first job finds another job in the marker.
    assert client.post("/select-db/preparing/twice/rebuild").status_code == 302
    second = progress.status("twice").job
    assert first != second
    assert service.run("twice", first).state == "queued"
    assert run_queued() == 2
    assert progress.status("twice").state == "ready"


def test_discard_moves_the_folder_aside_and_deletes_nothing(operator):
    client, default = operator
    client.post("/select-db/new", new_database_form("oops"))
    response = client.post("/select-db/preparing/oops/discard")
    assert response.status_code == 302 and response["Location"] == "/select-db"
    assert not (databases_dir() / "oops").exists()
    aside = list((databases_dir() / ".discarded").iterdir())
    assert [p.name.startswith("oops-") for p in aside] == [True]
    assert (aside[0] / PREPARING_MARKER).exists()
    assert ("success", "root") in audit_rows(default, "database.discard")
    # The job still queued finds nothing to do; the label is free again.
    run_queued()
    assert not (databases_dir() / "oops").exists()
    assert client.get("/select-db/preparing/oops").status_code == 404
    # A ready database is never discarded.
    refused = client.post("/select-db/preparing/default/discard", follow=True)
    assert any("ready and may be in use" in m for m in messages_of(refused))
    assert default.exists()


# --- the readiness gate ---------------------------------------------------------------------


def mark_building(path: Path) -> None:
    """Stamp seed_status "building" into a file, as an interrupted build leaves it."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO system_settings (key, value, updated_at) "
            "VALUES ('seed_status', 'building', '2026-01-01')"
        )
    conn.close()


def test_a_file_whose_seed_status_is_not_ready_is_never_served(make_database, operator):
    client, _ = operator
    half = make_database(name="Half", label="half", users=[("amy", PASSWORD, True)])
    mark_building(half)
    refused = Client().post("/select-db", {"path": str(half)})
    assert refused.status_code == 400
    assert any("never finished" in m for m in messages_of(refused))
    listed = client.get("/select-db").content.decode()
    assert "never finished" in listed and 'href="/select-db/preparing/half"' in listed
    assert progress.status("half").state == "not_ready"
    # The API refuses it too, in the one error shape.
    api = Client().get("/api/v1/databases/half/companies/")
    assert api.status_code == 409 and api.json()["error"]["code"] == "database_unavailable"
    out = io.StringIO()
    call_command("dbstatus", stdout=out)
    assert "not ready (seed status 'building')" in out.getvalue()
    # An operator sees why on its page and discards it (nothing recorded how to rebuild it).
    page = client.get("/select-db/preparing/half").content.decode()
    assert 'id="operator-actions"' in page and "never finished" in page
    nothing = client.post("/select-db/preparing/half/rebuild", follow=True)
    assert any("discard it and create it again" in m for m in messages_of(nothing))
    client.post("/select-db/preparing/half/discard")
    assert not half.exists()
    (aside,) = (databases_dir() / ".discarded").iterdir()
    assert (aside / "nukeworks.sqlite").exists()


def test_a_file_without_seed_status_counts_as_ready(make_database):
    plain = make_database(name="Plain", label="plain")
    assert "seed_status" not in settings_of(plain)
    assert Client().post("/select-db", {"path": str(plain)}).status_code == 302


# --- manage.py createdb / discarddb -----------------------------------------------------------


def test_createdb_without_a_worker_builds_the_database_itself():
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "createdb",
        "cmd",
        seed="starter@1",
        display_name="From the shell",
        admin="boss",
        admin_password=ADMIN_PASSWORD,
        stdout=out,
        stderr=err,
    )
    path = databases_dir() / "cmd" / "nukeworks.sqlite"
    assert f"Created database 'From the shell' at {path}" in out.getvalue()
    assert "building here" in err.getvalue()
    assert "building: 100%" in err.getvalue()  # the progress bar, on the command's stderr
    assert_holds_the_starter_package(path)
    assert password_hash(path, "boss").startswith("md5$")  # the test settings' hasher
    assert HUEY.pending_count() == 0
    assert [o for o, _ in audit_rows(path, "database.create")] == ["success"]


def test_createdb_refuses_existing_and_bad_labels_and_unknown_seeds(make_database):
    make_database(label="taken")
    with pytest.raises(CommandError, match="exists already"):
        call_command("createdb", "taken", seed="starter@1", stdout=io.StringIO())
    with pytest.raises(CommandError, match="is not one"):
        call_command("createdb", "no/slash", stdout=io.StringIO())
    with pytest.raises(CommandError, match="Unknown or unusable seed package 'nope@9'"):
        call_command("createdb", "fresh", seed="nope@9", stdout=io.StringIO())
    with pytest.raises(CommandError, match="Password refused"):
        call_command("createdb", "fresh", admin="boss", admin_password="123", stdout=io.StringIO())
    assert sorted(p.name for p in databases_dir().iterdir()) == ["taken"]


def test_createdb_no_wait_queues_dbstatus_shows_it_and_the_worker_builds_it():
    out = io.StringIO()
    call_command("createdb", "queued", empty=True, no_wait=True, stdout=out)
    assert "Queued job" in out.getvalue()
    status = io.StringIO()
    call_command("dbstatus", stdout=status)
    assert "being prepared: queued" in status.getvalue()
    assert HUEY.pending_count() == 1
    run_queued()
    path = databases_dir() / "queued" / "nukeworks.sqlite"
    assert file_rows(path)[0] == set()
    assert settings_of(path)["seed_status"] == "ready"


def test_createdb_retry_and_discarddb():
    call_command("createdb", "again", seed="starter@1", no_wait=True, stdout=io.StringIO())
    folder = databases_dir() / "again"
    # As a killed worker leaves it: "building" in the marker, nobody holding the lock.
    progress.write(folder, state="building", job="dead", done=3, total=60)
    assert progress.status("again").state == "interrupted"
    HUEY.flush()
    call_command("createdb", "again", retry=True, stdout=io.StringIO(), stderr=io.StringIO())
    assert_holds_the_starter_package(folder / "nukeworks.sqlite")
    with pytest.raises(CommandError, match="nothing to rebuild"):
        call_command("createdb", "again", retry=True, stdout=io.StringIO())
    with pytest.raises(CommandError, match="ready and may be in use"):
        call_command("discarddb", "again", interactive=False, stdout=io.StringIO())
    call_command("createdb", "gone", no_wait=True, stdout=io.StringIO())
    out = io.StringIO()
    call_command("discarddb", "gone", interactive=False, stdout=out)
    assert "moved to" in out.getvalue() and not (databases_dir() / "gone").exists()


# --- the API ----------------------------------------------------------------------------------


def token_for(label: str, username: str, password: str) -> str:
    response = Client().post(
        f"/api/v1/databases/{label}/auth/token",
        {"username": username, "password": password},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()["token"]


def api_post(url: str, token: str, data: dict | None = None):
    return Client().post(
        url,
        data or {},
        content_type="application/json",
        headers={"Authorization": f"Token {token}"},
    )


def api_get(url: str, token: str | None = None):
    headers = {"Authorization": f"Token {token}"} if token else {}
    return Client().get(url, headers=headers)


def test_an_operator_creates_a_database_through_the_api(make_database):
    default = make_database(name="Default", label="default", users=[("root", PASSWORD, True)])
    token = token_for("default", "root", PASSWORD)
    seeds = api_get("/api/v1/databases/default/databases/seeds", token)
    assert seeds.status_code == 200 and "starter@1" in {s["ref"] for s in seeds.json()}
    created = api_post(
        "/api/v1/databases/default/databases/",
        token,
        {
            "label": "viaapi",
            "display_name": "Via the API",
            "seed": "starter@1",
            "admin": {"username": "boss", "password": ADMIN_PASSWORD},
        },
    )
    assert created.status_code == 202, created.content
    job = created.json()
    assert job["label"] == "viaapi" and job["state"] == "queued" and job["job"]
    assert job["progress_url"] == "http://testserver/api/v1/databases/default/databases/viaapi"
    assert job["page_url"] == "http://testserver/select-db/preparing/viaapi"
    followed = api_get(job["progress_url"], token).json()
    assert followed["state"] == "queued" and followed["job"] == job["job"]

    # The gate: the new database's own URLs answer 503 with Retry-After and the progress.
    waiting = api_get("/api/v1/databases/viaapi/companies/")
    assert waiting.status_code == 503 and waiting["Retry-After"]
    error = waiting.json()["error"]
    assert error["code"] == "database_preparing"
    assert error["detail"]["progress"]["state"] == "queued"
    catalog = {e["label"]: e for e in api_get("/api/v1/databases/").json()}
    assert catalog["viaapi"]["state"] == "preparing"
    assert catalog["viaapi"]["progress"]["state"] == "queued"
    assert catalog["default"]["progress"] is None

    run_queued()
    assert api_get(job["progress_url"], token).json()["state"] == "ready"
    mine = token_for("viaapi", "boss", ADMIN_PASSWORD)
    listed = api_get("/api/v1/databases/viaapi/companies/?page_size=100", mine).json()
    assert len(listed["results"]) == 16
    assert_holds_the_starter_package(databases_dir() / "viaapi" / "nukeworks.sqlite")
    assert ("queued", "root") in audit_rows(default, "database.create")

    taken = api_post("/api/v1/databases/default/databases/", token, {"label": "viaapi"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "label_taken"
    unknown = api_post(
        "/api/v1/databases/default/databases/", token, {"label": "x1", "seed": "nope@1"}
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_seed"


def test_a_failed_build_answers_409_with_its_progress(make_database):
    make_database(name="Default", label="default", users=[("root", PASSWORD, True)])
    token = token_for("default", "root", PASSWORD)
    service.request_build("broken", seed=None, requested_by="t", via="test", enqueue=False)
    progress.write(databases_dir() / "broken", state="failed", job="j", message="it broke")
    answer = api_get("/api/v1/databases/broken/companies/")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "database_not_ready"
    assert answer.json()["error"]["detail"]["progress"]["message"] == "it broke"
    discarded = api_post("/api/v1/databases/default/databases/broken/discard", token)
    assert discarded.status_code == 200 and ".discarded" in discarded.json()["moved_to"]
    assert api_get("/api/v1/databases/broken/companies/").status_code == 404


# --- operators only ---------------------------------------------------------------------------


def test_non_operators_get_403_and_do_not_see_the_control(make_database):
    make_database(name="Default", label="default", users=[("root", PASSWORD, True)])
    mine = make_database(name="Mine", label="mine", users=[("admin", PASSWORD, True)])
    service.request_build("pending", seed=None, requested_by="t", via="test", enqueue=False)
    anonymous = Client()
    outsider = Client()  # the admin of a database of their own: no server-wide power
    select(outsider, mine)
    assert sign_in(outsider, "admin", PASSWORD).status_code == 302
    for client in (anonymous, outsider):
        assert 'id="new-database"' not in client.get("/select-db").content.decode()
        assert client.get("/select-db/new").status_code == 403
        assert client.post("/select-db/new", new_database_form("sneaky")).status_code == 403
        assert client.post("/select-db/preparing/pending/rebuild").status_code == 403
        assert client.post("/select-db/preparing/pending/discard").status_code == 403
        page = client.get("/select-db/preparing/pending").content.decode()
        assert 'id="operator-actions"' not in page
    token = token_for("mine", "admin", PASSWORD)
    refused = api_post("/api/v1/databases/mine/databases/", token, {"label": "sneaky"})
    assert refused.status_code == 403
    assert api_post("/api/v1/databases/mine/databases/pending/discard", token).status_code == 403
    assert not (databases_dir() / "sneaky").exists()
    assert progress.status("pending").state == "queued"
    # The refused API write is audited in the caller's database.
    assert ("denied", "admin") in audit_rows(mine, "database.create")


def test_the_schema_documents_the_databases_endpoints(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", validate=True, fail_on_warn=True, file=str(target))
    schema = target.read_text()
    assert "/api/v1/databases/{db}/databases/:" in schema
    assert "/api/v1/databases/{db}/databases/{label}/rebuild:" in schema
    assert "DatabaseCreate" in schema and "PreparingProgress" in schema


def test_an_unreadable_database_is_never_discarded():
    folder = databases_dir() / "garbled"
    folder.mkdir()
    (folder / "nukeworks.sqlite").write_bytes(b"not a database at all" * 100)
    assert progress.status("garbled").state == "unusable"
    with pytest.raises(CommandError, match="only databases that never became ready"):
        call_command("discarddb", "garbled", interactive=False, stdout=io.StringIO())
    assert (folder / "nukeworks.sqlite").exists()
