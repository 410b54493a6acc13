"""The API follows the pages' rules, and every error leaves in one JSON shape."""

from __future__ import annotations

import json
import sqlite3

import pytest
from django.test import Client

from tests.helpers import assert_error, select, sign_in

PASSWORD = "pw-api-123"


def token_for(label: str, username: str = "ann") -> str:
    response = Client().post(
        f"/api/v1/databases/{label}/auth/token",
        {"username": username, "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()["token"]


@pytest.fixture
def alpha(make_database):
    return make_database(
        name="Alpha",
        label="alpha",
        companies=["Acme"],
        users=[("ann", PASSWORD, True), ("amy", PASSWORD, False)],
    )


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def test_the_catalog_lists_labels_names_sizes_and_states(alpha, make_old_database):
    make_old_database(label="old")
    response = Client().get("/api/v1/databases/")
    assert response.status_code == 200
    entries = {e["label"]: e for e in response.json()}
    assert entries["alpha"]["display_name"] == "Alpha"
    assert entries["alpha"]["state"] == "up_to_date"
    assert entries["alpha"]["size"] == alpha.stat().st_size
    assert entries["old"]["state"] == "needs_migration"


def test_create_retrieve_update_delete_a_company(alpha):
    headers = auth(token_for("alpha"))
    client = Client()
    created = client.post(
        "/api/v1/databases/alpha/companies/",
        {"name": "Bolt", "country": "FI"},
        content_type="application/json",
        headers=headers,
    )
    assert created.status_code == 201
    pk = created.json()["id"]
    url = f"/api/v1/databases/alpha/companies/{pk}/"
    assert client.get(url, headers=headers).json()["name"] == "Bolt"
    updated = client.patch(url, {"country": "SE"}, content_type="application/json", headers=headers)
    assert updated.status_code == 200 and updated.json()["country"] == "SE"
    assert client.delete(url, headers=headers).status_code == 204
    assert_error(client.get(url, headers=headers), 404, "not_found")
    conn = sqlite3.connect(alpha)
    assert conn.execute("SELECT name FROM companies_company").fetchall() == [("Acme",)]
    conn.close()


def test_projects_belong_to_a_company_of_the_same_database(alpha):
    headers = auth(token_for("alpha"))
    client = Client()
    [acme] = client.get("/api/v1/databases/alpha/companies/", headers=headers).json()["results"]
    created = client.post(
        "/api/v1/databases/alpha/projects/",
        {"name": "Unit 1", "company": acme["id"], "status": "planned"},
        content_type="application/json",
        headers=headers,
    )
    assert created.status_code == 201
    bad = client.post(
        "/api/v1/databases/alpha/projects/",
        {"name": "Unit 2", "company": 9999},
        content_type="application/json",
        headers=headers,
    )
    error = assert_error(bad, 400, "invalid")
    assert "company" in error["detail"]


def test_lists_page_by_cursor_and_search_and_order(make_database):
    make_database(
        label="many",
        companies=[f"Company {i:03d}" for i in range(120)],
        users=[("ann", PASSWORD, True)],
    )
    headers = auth(token_for("many"))
    client = Client()
    seen: list[str] = []
    url = "/api/v1/databases/many/companies/?page_size=50&ordering=-name"
    while url:
        page = client.get(url, headers=headers).json()
        assert "count" not in page  # no COUNT(*) of the whole table
        seen += [c["name"] for c in page["results"]]
        url = page["next"]
    assert seen == [f"Company {i:03d}" for i in reversed(range(120))]
    found = client.get("/api/v1/databases/many/companies/?search=11", headers=headers)
    names = [c["name"] for c in found.json()["results"]]
    assert names == ["Company 011"] + [f"Company {i}" for i in range(110, 120)]
    refused = client.get("/api/v1/databases/many/companies/?ordering=country", headers=headers)
    # Only unique columns can order keyset pages: others are ignored, never a full sort.
    assert refused.status_code == 200


def test_invalid_json_is_400_in_the_one_shape(alpha):
    response = Client().post(
        "/api/v1/databases/alpha/companies/",
        "{not json",
        content_type="application/json",
        headers=auth(token_for("alpha")),
    )
    assert_error(response, 400, "bad_request")


def test_a_body_over_the_upload_limit_is_413(alpha, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = Client().post(
        "/api/v1/databases/alpha/companies/",
        json.dumps({"name": "x", "notes": "y" * 5000}),
        content_type="application/json",
        headers=auth(token_for("alpha")),
    )
    assert_error(response, 413, "payload_too_large")


def test_wrong_method_is_405(alpha):
    response = Client().put("/api/v1/databases/", "{}", content_type="application/json")
    assert_error(response, 405, "method_not_allowed")


def test_a_database_that_needs_migration_answers_409_with_the_plan(make_old_database):
    make_old_database(label="old")
    error = assert_error(Client().get("/api/v1/databases/old/companies/"), 409, "needs_migration")
    plan = error["detail"]["plan"]
    assert plan and all(set(step) == {"app", "name"} for step in plan)
    assert {step["app"] for step in plan} == {"companies", "attachments"}
    assert "1 migration" in error["message"] or f"{len(plan)} migration" in error["message"]


def test_a_file_that_is_not_a_database_answers_409_with_the_reason(settings):
    folder = settings.DBSELECT["DATABASES_DIR"] / "junk"
    folder.mkdir()
    (folder / "nukeworks.sqlite").write_text("not a database at all")
    error = assert_error(
        Client().get("/api/v1/databases/junk/companies/"), 409, "database_unavailable"
    )
    assert "SQLite" in error["message"]


def test_a_locked_database_answers_503_with_retry_after(alpha, settings):
    token = token_for("alpha")
    settings.DBSELECT = {**settings.DBSELECT, "BUSY_TIMEOUT": 0.2}
    from dbselect import engines

    engines.dispose(str(alpha))  # new connections take the short busy timeout
    holder = sqlite3.connect(alpha, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = Client().post(
            "/api/v1/databases/alpha/companies/",
            {"name": "Blocked"},
            content_type="application/json",
            headers=auth(token),
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_error(response, 503, "database_busy")
    assert response["Retry-After"]


def test_the_browser_session_authenticates_on_current_only_and_needs_csrf(alpha):
    client = Client(enforce_csrf_checks=True)
    select_client = Client()
    select(select_client, alpha)
    sign_in(select_client, "ann", PASSWORD)
    client.cookies = select_client.cookies
    listed = client.get("/api/v1/databases/current/companies/")
    assert listed.status_code == 200
    assert [c["name"] for c in listed.json()["results"]] == ["Acme"]
    # The same cookie names no database by label.
    assert_error(client.get("/api/v1/databases/alpha/companies/"), 401, "not_authenticated")
    # Writes with the cookie need the CSRF token.
    refused = client.post(
        "/api/v1/databases/current/companies/", {"name": "X"}, content_type="application/json"
    )
    assert_error(refused, 403, "permission_denied")
    assert "CSRF" in refused.json()["error"]["message"]
    csrf = client.get("/select-db").cookies["csrftoken"].value
    accepted = client.post(
        "/api/v1/databases/current/companies/",
        {"name": "X"},
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    assert accepted.status_code == 201


def test_current_without_a_selected_database_is_404():
    assert_error(Client().get("/api/v1/databases/current/companies/"), 404, "no_database_selected")


def test_the_schema_and_the_docs_are_served_without_a_cdn():
    schema = Client().get("/api/schema/", headers={"Accept": "application/json"})
    assert schema.status_code == 200
    assert "/api/v1/databases/{db}/companies/" in schema.content.decode()
    docs = Client().get("/api/docs/")
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "swagger-ui" in page and "cdn" not in page.lower() and "/static/" in page
