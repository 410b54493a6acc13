"""The API's admin endpoints: snapshots and migrations (a database's admins), engines (operators).

Real database files through the whole middleware stack, with tokens from
POST /api/v1/databases/<label>/auth/token. Every refusal leaves in the one error shape.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.db import connections
from django.test import Client

from dbselect import engines, protection, state
from dbselect.engines import workers as engine_store
from migrating.service import file_lock
from snapshots.locks import folder_lock
from tests.helpers import assert_error, company_names, dump_without_audit, select, sign_in

PASSWORD = "pw-api-123"
ADMIN = ("ann", PASSWORD, True)
CLERK = ("amy", PASSWORD, False)

# What a database one schema step behind (make_old_database) still has to apply.
OLD_PLAN = [
    {"app": "companies", "name": "0002_company_website"},
    {"app": "attachments", "name": "0001_initial"},
    {"app": "companies", "name": "0003_list_indexes"},
]


def token_for(label: str, username: str = "ann") -> str:
    response = Client().post(
        f"/api/v1/databases/{label}/auth/token",
        {"username": username, "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()["token"]


def token_in_file(path: Path, username: str) -> str:
    """A token written straight into a file the token endpoint refuses (needs migration).

    As if it had been issued before the code was upgraded.
    """
    from knox.models import AuthToken

    engine = engines.register(str(path))
    with state.override(engine.alias):
        user = get_user_model()._default_manager.get(username=username)
        _, token = AuthToken.objects.create(user=user)
    connections[engine.alias].close()
    return token


class Api:
    """A client on one database's URLs with one token."""

    def __init__(self, label: str, token: str) -> None:
        self.base = f"/api/v1/databases/{label}/"
        self.headers = {"Authorization": f"Token {token}"}
        self.client = Client()

    def get(self, url: str):
        return self.client.get(self.base + url, headers=self.headers)

    def post(self, url: str, data: dict | None = None):
        return self.client.post(
            self.base + url, data or {}, content_type="application/json", headers=self.headers
        )

    def delete(self, url: str):
        return self.client.delete(self.base + url, headers=self.headers)


def audit_rows(path: Path, prefix: str) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT action, outcome, username FROM audit_auditentry ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [row for row in rows if row[0].startswith(prefix)]


def snapshot_files(path: Path) -> list[str]:
    folder = path.parent / "snapshots"
    return sorted(p.name for p in folder.glob("*.sqlite")) if folder.is_dir() else []


@pytest.fixture
def alpha(make_database) -> Path:
    return make_database(name="Alpha", label="alpha", companies=["Old Co"], users=[ADMIN, CLERK])


@pytest.fixture(autouse=True)
def _own_engine_store_and_throttles(tmp_path, settings):
    """Each test its own shared engine store (the engines endpoints read it), and throttle
    budgets of its own: these tests sign in often, and the sign-in budget is per address."""
    settings.DBSELECT = {
        **settings.DBSELECT,
        "ENGINE_STORE_DIR": tmp_path / "engines",
        "ENGINE_REFRESH_WAIT": 0,
    }
    cache.clear()
    yield
    engine_store.reset_store()
    cache.clear()


# --- snapshots -----------------------------------------------------------------------------


def test_admin_creates_lists_restores_and_deletes_a_snapshot(alpha):
    api = Api("alpha", token_for("alpha"))
    created = api.post("snapshots/", {"note": "known good"})
    assert created.status_code == 201, created.content
    snapshot = created.json()
    assert snapshot["note"] == "known good" and snapshot["kind"] == "manual"
    assert snapshot["created_by"] == "ann" and len(snapshot["sha256"]) == 64
    assert "path" not in snapshot and "source_path" not in snapshot
    name = snapshot["name"]
    assert snapshot_files(alpha) == [name]
    assert api.post("companies/", {"name": "New Co"}).status_code == 201

    listed = api.get("snapshots/").json()
    assert [s["name"] for s in listed["snapshots"]] == [name]
    assert listed["total_size"] == snapshot["size"] and listed["ignored"] == []
    assert api.get(f"snapshots/{name}").json()["note"] == "known good"

    restored = api.post(f"snapshots/{name}/restore")
    assert restored.status_code == 200, restored.content
    result = restored.json()
    assert result["restored"]["name"] == name
    assert result["safety"]["kind"] == "safety" and result["safety"]["name"] != name
    assert company_names(alpha) == {"Old Co"}
    # The token existed when the snapshot was taken: it still opens the restored database.
    companies = api.get("companies/")
    assert [c["name"] for c in companies.json()["results"]] == ["Old Co"]
    safety = alpha.parent / "snapshots" / result["safety"]["name"]
    assert company_names(safety) == {"Old Co", "New Co"}
    names = [s["name"] for s in api.get("snapshots/").json()["snapshots"]]
    assert names == [result["safety"]["name"], name]  # newest first

    assert api.delete(f"snapshots/{name}").status_code == 204
    assert snapshot_files(alpha) == [result["safety"]["name"]]
    assert_error(api.get(f"snapshots/{name}"), 404, "snapshot_not_found")
    assert_error(api.delete(f"snapshots/{name}"), 404, "snapshot_not_found")
    # The same audit entries as the pages: the service records them.
    assert audit_rows(alpha, "snapshot.") == [
        ("snapshot.create", "success", "ann"),
        ("snapshot.create", "success", "ann"),  # the safety snapshot
        ("snapshot.restore", "success", "ann"),
        ("snapshot.delete", "success", "ann"),
        ("snapshot.delete", "failure", "ann"),
    ]


def test_a_token_made_after_the_snapshot_is_gone_with_the_restore(alpha):
    api = Api("alpha", token_for("alpha"))
    name = api.post("snapshots/").json()["name"]
    later = Api("alpha", token_for("alpha"))
    assert later.post(f"snapshots/{name}/restore").status_code == 200
    assert_error(later.get("snapshots/"), 401, "authentication_failed")
    assert api.get("snapshots/").status_code == 200


def test_a_note_that_is_not_text_is_400(alpha):
    api = Api("alpha", token_for("alpha"))
    error = assert_error(api.post("snapshots/", {"note": "x" * 501}), 400, "invalid")
    assert "note" in error["detail"]
    assert snapshot_files(alpha) == []


@pytest.mark.parametrize(
    "name", ["nope.sqlite", "beta-20240101-000000-0123abcd.sqlite", "..", "nukeworks.sqlite"]
)
def test_names_that_are_not_this_databases_snapshots_are_404(alpha, name):
    api = Api("alpha", token_for("alpha"))
    before = dump_without_audit(alpha)
    assert_error(api.get(f"snapshots/{name}"), 404, "snapshot_not_found")
    assert_error(api.post(f"snapshots/{name}/restore"), 404, "snapshot_not_found")
    assert_error(api.delete(f"snapshots/{name}"), 404, "snapshot_not_found")
    assert dump_without_audit(alpha) == before


def test_a_damaged_snapshot_is_refused_with_422_and_nothing_changes(alpha):
    api = Api("alpha", token_for("alpha"))
    name = api.post("snapshots/").json()["name"]
    snapshot = alpha.parent / "snapshots" / name
    data = bytearray(snapshot.read_bytes())
    data[4096 : 4096 * 3] = b"\xff" * (4096 * 2)
    snapshot.write_bytes(bytes(data))
    api.post("companies/", {"name": "Live Co"})
    before = dump_without_audit(alpha)

    error = assert_error(api.post(f"snapshots/{name}/restore"), 422, "snapshot_failed")
    assert error["message"].startswith("The database was not restored.")
    assert "damaged" in error["message"]
    assert dump_without_audit(alpha) == before
    assert snapshot_files(alpha) == [name]  # no safety snapshot either


def test_a_busy_snapshots_folder_answers_409_with_retry_after(alpha, monkeypatch):
    from snapshots import service

    api = Api("alpha", token_for("alpha"))
    name = api.post("snapshots/").json()["name"]
    monkeypatch.setattr(service, "LOCK_TIMEOUT", 0.2)
    with folder_lock(alpha.parent / "snapshots", exclusive=True):
        response = api.delete(f"snapshots/{name}")
    error = assert_error(response, 409, "snapshot_busy")
    assert error["message"].startswith("Nothing was deleted.")
    assert response["Retry-After"]
    assert snapshot_files(alpha) == [name]


def test_a_restore_on_current_keeps_the_browser_session_working(alpha):
    client = Client(enforce_csrf_checks=True)
    signing_in = Client()
    select(signing_in, alpha)
    sign_in(signing_in, "ann", PASSWORD)
    client.cookies = signing_in.cookies
    csrf = {"X-CSRFToken": client.get("/select-db").cookies["csrftoken"].value}
    base = "/api/v1/databases/current/snapshots/"
    created = client.post(base, {}, content_type="application/json", headers=csrf)
    assert created.status_code == 201, created.content
    name = created.json()["name"]
    assert client.post("/companies/new/", {"name": "New Co"}, headers=csrf).status_code == 302

    refused = client.post(f"{base}{name}/restore", {}, content_type="application/json")
    assert_error(refused, 403, "permission_denied")  # no CSRF token
    restored = client.post(
        f"{base}{name}/restore", {}, content_type="application/json", headers=csrf
    )
    assert restored.status_code == 200, restored.content

    assert company_names(alpha) == {"Old Co"}
    page = client.get("/companies/")  # still signed in: the sign-in was verified afresh
    assert page.status_code == 200
    assert ">Old Co</a>" in page.content.decode() and ">New Co</a>" not in page.content.decode()


# --- refusals ------------------------------------------------------------------------------


def test_a_non_admin_token_gets_403_on_every_admin_endpoint(alpha, make_database):
    make_database(name="Default", label="default", users=[ADMIN])
    admin = Api("alpha", token_for("alpha"))
    name = admin.post("snapshots/").json()["name"]
    clerk = Api("alpha", token_for("alpha", "amy"))
    before = dump_without_audit(alpha)

    for method, url in [
        ("get", "snapshots/"),
        ("post", "snapshots/"),
        ("get", f"snapshots/{name}"),
        ("delete", f"snapshots/{name}"),
        ("post", f"snapshots/{name}/restore"),
        ("post", "migrations/"),
        ("get", "engines/"),
        ("post", "engines/dispose"),
        ("post", "engines/dispose-idle"),
    ]:
        error = assert_error(getattr(clerk, method)(url), 403, "permission_denied")
        assert "Only an" in error["message"], (method, url)

    assert dump_without_audit(alpha) == before
    assert snapshot_files(alpha) == [name]
    # Refused writes are audited as the pages audit them.
    assert audit_rows(alpha, "snapshot.denied") == [("snapshot.denied", "denied", "amy")] * 3
    assert audit_rows(alpha, "database.migrate") == [("database.migrate", "denied", "amy")]


def test_no_token_gets_401_and_is_not_audited(alpha):
    for url in ("snapshots/", "migrations/", "engines/dispose"):
        response = Client().post(f"/api/v1/databases/alpha/{url}", {}, "application/json")
        assert_error(response, 401, "not_authenticated")
    assert audit_rows(alpha, "snapshot.") == []


# --- migrations ----------------------------------------------------------------------------


def test_the_plan_of_an_old_database_and_applying_it(make_old_database):
    old = make_old_database(label="old", users=[ADMIN, CLERK])
    admin = Api("old", token_in_file(old, "ann"))
    clerk = Api("old", token_in_file(old, "amy"))
    assert_error(admin.get("companies/"), 409, "needs_migration")

    plan = clerk.get("migrations/")  # any user of the database reads the plan
    assert plan.status_code == 200, plan.content
    assert plan.json() == {
        "state": "needs_migration",
        "pending": OLD_PLAN,
    }
    assert_error(clerk.post("migrations/"), 403, "permission_denied")

    applied = admin.post("migrations/")
    assert applied.status_code == 200, applied.content
    result = applied.json()
    assert result["already_current"] is False
    assert result["applied"] == OLD_PLAN
    assert snapshot_files(old) == [result["snapshot"]]

    assert admin.get("migrations/").json() == {"state": "up_to_date", "pending": []}
    companies = admin.get("companies/")
    assert companies.status_code == 200
    assert [c["name"] for c in companies.json()["results"]] == ["Legacy One", "Legacy Two"]
    again = admin.post("migrations/").json()
    assert again == {"already_current": True, "applied": [], "snapshot": None}
    assert audit_rows(old, "database.migrate") == [
        ("database.migrate", "denied", "amy"),
        ("database.migrate", "success", "ann"),
    ]


def test_the_plan_answers_again_once_the_database_is_cached(make_old_database):
    """The first request registers an engine it cannot validate (the file needs migration):
    later requests must still reach the plan, and the other endpoints still say why not."""
    old = make_old_database(label="old", users=[ADMIN])
    api = Api("old", token_in_file(old, "ann"))
    engines.dispose(str(old))
    for _ in range(3):
        assert api.get("migrations/").json()["state"] == "needs_migration"
        error = assert_error(api.get("companies/"), 409, "needs_migration")
        assert error["detail"]["plan"] == OLD_PLAN


def test_a_failed_migration_is_rolled_back_from_its_snapshot(make_database, settings):
    path = make_database(name="Fragile", label="fragile", companies=["Keep Me"], users=[ADMIN])
    api = Api("fragile", token_for("fragile"))
    settings.MIGRATION_MODULES = {"companies": "tests.failing_migrations"}
    assert api.get("migrations/").json()["pending"] == [
        {"app": "companies", "name": "0003_fails_half_way"}
    ]
    before = dump_without_audit(path)

    error = assert_error(api.post("migrations/"), 422, "migration_failed")

    detail = error["detail"]
    assert detail["restored"] is True and detail["snapshot"] in snapshot_files(path)
    assert "simulated failure in the middle of a migration" in detail["reason"]
    assert f"restored from the snapshot {detail['snapshot']}; nothing was lost" in error["message"]
    assert dump_without_audit(path) == before
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(companies_company)")]
    conn.close()
    assert "half_done" not in columns
    assert audit_rows(path, "database.migrate") == [("database.migrate", "failure", "ann")]


def test_a_migration_already_running_answers_409(make_old_database, monkeypatch):
    from api.views import migrations

    old = make_old_database(label="old", users=[ADMIN])
    api = Api("old", token_in_file(old, "ann"))
    monkeypatch.setattr(migrations, "LOCK_TIMEOUT", 0.2)
    before = dump_without_audit(old)
    with file_lock(str(old), timeout=1):
        response = api.post("migrations/")
    error = assert_error(response, 409, "migration_in_progress")
    assert "Another administrator is migrating" in error["message"]
    assert response["Retry-After"]
    assert dump_without_audit(old) == before and snapshot_files(old) == []


def test_a_protected_database_is_not_migrated_without_a_grant(make_old_database):
    old = make_old_database(label="old", users=[ADMIN])
    api = Api("old", token_in_file(old, "ann"))
    alias = engines.register(str(old)).alias
    protection.set_protected(alias, True)
    connections[alias].close()
    before = dump_without_audit(old)
    assert_error(api.post("migrations/"), 423, "database_protected")
    assert dump_without_audit(old) == before and snapshot_files(old) == []


def test_concurrent_applies_migrate_once(make_old_database):
    old = make_old_database(label="old", users=[ADMIN])
    tokens = [token_in_file(old, "ann") for _ in range(2)]
    barrier = threading.Barrier(2)
    answers: list[dict] = []

    def apply(token: str) -> None:
        api = Api("old", token)
        barrier.wait()
        response = api.post("migrations/")
        answers.append({"status": response.status_code, **response.json()})
        connections.close_all()

    threads = [threading.Thread(target=apply, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a["status"] for a in answers] == [200, 200], answers
    assert sorted(a["already_current"] for a in answers) == [False, True]
    assert len(snapshot_files(old)) == 1


# --- engines -------------------------------------------------------------------------------


@pytest.fixture
def operator(make_database) -> tuple[Api, Path]:
    """An admin token of databases/default, the default operator database."""
    default = make_database(name="Default", label="default", users=[ADMIN, CLERK])
    return Api("default", token_for("default")), default


def test_an_operator_lists_and_disposes_engines(operator, alpha):
    api, default = operator
    engines.validate_and_register(str(alpha))
    listed = api.get("engines/")
    assert listed.status_code == 200, listed.content
    data = listed.json()
    rows = {e["path"]: e for e in data["engines"]}
    assert {str(default), str(alpha)} <= set(rows)
    assert rows[str(alpha)]["display_name"] == "Alpha"
    assert rows[str(default)]["journal_mode"].upper() == "WAL"
    assert any(w["current"] for w in data["workers"])

    disposed = api.post("engines/dispose", {"path": str(alpha)})
    assert disposed.status_code == 200, disposed.content
    assert disposed.json() == {"disposed": [str(alpha)]}
    assert engines.get(str(alpha)) is None
    assert_error(api.post("engines/dispose", {"path": str(alpha)}), 404, "engine_not_found")
    assert_error(api.post("engines/dispose", {}), 400, "invalid")
    # Audited in the operator's database, as the engines page does.
    assert ("engine.dispose", "success", "ann") in audit_rows(default, "engine.")


def test_an_operator_disposes_idle_engines_and_its_own(operator, make_database, settings):
    api, default = operator
    quiet = str(make_database(name="Quiet"))
    engines.validate_and_register(quiet)
    engines.get(quiet).last_used -= 3600
    settings.DBSELECT = {**settings.DBSELECT, "ENGINE_IDLE_SECONDS": 600}
    response = api.post("engines/dispose-idle")
    assert response.status_code == 200
    assert response.json() == {"disposed": [quiet]}
    assert engines.get(quiet) is None
    # Its own database: the next request simply opens it again.
    assert api.post("engines/dispose", {"path": str(default)}).status_code == 200
    assert api.get("engines/").status_code == 200


def test_the_admin_of_another_database_is_no_operator(operator, alpha):
    _, default = operator
    engines.validate_and_register(str(default))
    outsider = Api("alpha", token_for("alpha"))
    assert_error(outsider.get("engines/"), 403, "permission_denied")
    refused = outsider.post("engines/dispose", {"path": str(default)})
    error = assert_error(refused, 403, "permission_denied")
    assert "operator" in error["message"]
    assert_error(outsider.post("engines/dispose-idle"), 403, "permission_denied")
    assert engines.get(str(default)) is not None


def test_the_operators_browser_session_on_current(operator):
    _, default = operator
    client = Client()
    select(client, default)
    sign_in(client, "ann", PASSWORD)
    assert client.get("/api/v1/databases/current/engines/").status_code == 200
    clerk = Client()
    select(clerk, default)
    sign_in(clerk, "amy", PASSWORD)
    assert_error(clerk.get("/api/v1/databases/current/engines/"), 403, "permission_denied")


# --- the schema ----------------------------------------------------------------------------


def test_the_schema_documents_the_admin_endpoints_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", validate=True, fail_on_warn=True, file=str(target))
    schema = target.read_text()
    for path in (
        "/api/v1/databases/{db}/snapshots/:",
        "/api/v1/databases/{db}/snapshots/{name}/restore:",
        "/api/v1/databases/{db}/migrations/:",
        "/api/v1/databases/{db}/engines/dispose:",
    ):
        assert path in schema
    assert "RestoreResult" in schema and "MigrationResult" in schema and "ErrorBody" in schema


def test_an_admin_gets_a_token_for_a_database_that_needs_migration_and_migrates_it(
    make_old_database,
):
    """Only another app's migration is pending: signing in still works, then the admin
    applies the plan through the API (nothing but a token needed)."""
    make_old_database(label="old", users=[ADMIN])
    admin = Api("old", token_for("old"))
    assert_error(admin.get("companies/"), 409, "needs_migration")
    assert admin.post("migrations/").status_code == 200
    assert admin.get("companies/").status_code == 200


def test_no_token_while_the_sign_in_tables_themselves_need_migration(make_database, settings):
    path = make_database(label="stale", users=[ADMIN])
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM django_migrations WHERE app = 'knox'")
    conn.commit()
    conn.close()
    response = Client().post(
        "/api/v1/databases/stale/auth/token",
        {"username": "ann", "password": PASSWORD},
        content_type="application/json",
    )
    error = assert_error(response, 409, "needs_migration")
    assert {step["app"] for step in error["detail"]["plan"]} == {"knox"}


def test_an_operators_cookie_counts_on_current_only_and_with_csrf(operator, alpha):
    _, default = operator
    browser = Client()
    select(browser, default)
    sign_in(browser, "ann", PASSWORD)
    # The session then works on another database, as an anonymous visitor there.
    select(browser, alpha)
    client = Client(enforce_csrf_checks=True)
    client.cookies = browser.cookies
    assert client.get("/api/v1/databases/current/engines/").status_code == 200
    # Never on a database named by label, not even the operator database itself.
    assert_error(client.get("/api/v1/databases/default/engines/"), 401, "not_authenticated")
    # A write through the cookie needs the CSRF token.
    refused = client.post(
        "/api/v1/databases/current/engines/dispose-idle", "{}", content_type="application/json"
    )
    assert_error(refused, 403, "permission_denied")
    assert "CSRF" in refused.json()["error"]["message"]
    csrf = client.get("/select-db").cookies["csrftoken"].value
    accepted = client.post(
        "/api/v1/databases/current/engines/dispose-idle",
        "{}",
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    assert accepted.status_code == 200
