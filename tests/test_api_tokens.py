"""API tokens: one per database, hashed in that file, expiring, revocable; never valid elsewhere."""

from __future__ import annotations

import datetime
import sqlite3
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

PASSWORD = "pw-api-123"


def token_for(client: Client, label: str, username: str, password: str = PASSWORD) -> str:
    response = client.post(
        f"/api/v1/databases/{label}/auth/token",
        {"username": username, "password": password},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()["token"]


def get(client: Client, url: str, token: str | None = None):
    headers = {"Authorization": f"Token {token}"} if token else {}
    return client.get(url, headers=headers)


@pytest.fixture
def two_databases(make_database):
    make_database(
        name="Alpha",
        label="alpha",
        companies=["Acme Alpha"],
        users=[("ann", PASSWORD, True), ("amy", PASSWORD, False)],
    )
    make_database(
        name="Beta", label="beta", companies=["Bolt Beta"], users=[("ann", PASSWORD, True)]
    )
    return "alpha", "beta"


def test_a_token_opens_its_own_database(two_databases):
    client = Client()
    token = token_for(client, "alpha", "ann")
    assert token.startswith("nw_")
    response = get(client, "/api/v1/databases/alpha/companies/", token)
    assert response.status_code == 200
    assert [c["name"] for c in response.json()["results"]] == ["Acme Alpha"]


def test_a_token_of_one_database_gets_401_on_another_even_for_the_same_username(two_databases):
    client = Client()
    token = token_for(client, "alpha", "ann")
    response = get(client, "/api/v1/databases/beta/companies/", token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert "Bolt Beta" not in response.content.decode()


def test_only_the_digest_is_stored_in_the_database_file(two_databases, settings):
    client = Client()
    token = token_for(client, "alpha", "ann")
    path = settings.DBSELECT["DATABASES_DIR"] / "alpha" / "nukeworks.sqlite"
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT digest, token_key FROM knox_authtoken").fetchall()
    conn.close()
    assert len(rows) == 1
    digest, key = rows[0]
    assert token not in digest and len(digest) == 128 and token.startswith(key)
    beta = sqlite3.connect(settings.DBSELECT["DATABASES_DIR"] / "beta" / "nukeworks.sqlite")
    assert beta.execute("SELECT count(*) FROM knox_authtoken").fetchone() == (0,)
    beta.close()


def test_wrong_password_gets_401_in_the_one_error_shape(two_databases):
    response = Client().post(
        "/api/v1/databases/alpha/auth/token",
        {"username": "ann", "password": "nope"},
        content_type="application/json",
    )
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "authentication_failed" and error["message"] and "detail" in error


def test_a_revoked_token_gets_401(two_databases):
    client = Client()
    token = token_for(client, "alpha", "ann")
    revoked = client.delete(
        "/api/v1/databases/alpha/auth/token", headers={"Authorization": f"Token {token}"}
    )
    assert revoked.status_code == 204
    assert get(client, "/api/v1/databases/alpha/companies/", token).status_code == 401


def test_an_expired_token_gets_401(two_databases, settings):
    client = Client()
    token = token_for(client, "alpha", "ann")
    path = settings.DBSELECT["DATABASES_DIR"] / "alpha" / "nukeworks.sqlite"
    conn = sqlite3.connect(path)
    past = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)).isoformat()
    conn.execute("UPDATE knox_authtoken SET expiry = ?", (past,))
    conn.commit()
    conn.close()
    assert get(client, "/api/v1/databases/alpha/companies/", token).status_code == 401


def test_no_token_gets_401(two_databases):
    response = get(Client(), "/api/v1/databases/alpha/companies/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_unknown_label_gets_404(two_databases):
    response = get(Client(), "/api/v1/databases/gamma/companies/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_database"


def test_apitoken_command_prints_a_working_token_once(two_databases):
    out, err = StringIO(), StringIO()
    call_command("apitoken", "ann", database="alpha", stdout=out, stderr=err)
    token = out.getvalue().strip()
    assert token.startswith("nw_") and "expires" in err.getvalue()
    response = get(Client(), "/api/v1/databases/alpha/companies/", token)
    assert response.status_code == 200


def test_apitoken_command_refuses_unknown_labels_and_users(two_databases):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No database is labelled"):
        call_command("apitoken", "ann", database="gamma")
    with pytest.raises(CommandError, match="No active user"):
        call_command("apitoken", "zed", database="alpha")
