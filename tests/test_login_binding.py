"""A sign-in per database: a login never travels between files, by id or by username.

Each browser session keeps the sign-ins it made, one per database, verified against that
file on every request: switching back resumes one, switching elsewhere asks for a sign-in
there, and a password change, deactivation or deletion in a file ends that file's sign-in.
"""

from __future__ import annotations

import sqlite3

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from dbselect import engines, state
from tests.helpers import messages_of, select, sign_in


def _user(path, username):
    alias = engines.register(str(path)).alias
    with state.override(alias):
        return get_user_model().objects.get(username=username)


def _signed_in_as(client: Client) -> str | None:
    page = client.get("/select-db").content.decode()
    marker = "Log out "
    if marker not in page:
        return None
    return page[page.index(marker) + len(marker) :].split("<", 1)[0].strip()


@pytest.fixture
def kim_in_alpha_and_beta(make_database):
    """kim signs in to Alpha, switches to Beta and signs in there too."""
    a = make_database(name="Alpha", users=[("kim", "pw-a", False)])
    b = make_database(name="Beta", users=[("kim", "pw-b", False)])
    client = Client()
    select(client, a)
    assert sign_in(client, "kim", "pw-a").status_code == 302
    select(client, b)
    assert sign_in(client, "kim", "pw-b").status_code == 302
    return client, a, b


def test_admin_of_one_file_is_not_admin_of_another_with_the_same_username(make_database):
    """The takeover: admin of a file I made selects the victim's database."""
    mine = make_database(name="Mine", users=[("admin", "my-own-pw", True)])
    victim = make_database(name="Default", users=[("admin", "victims-pw", True)])
    victim_hash = _user(victim, "admin").password
    client = Client()
    select(client, mine)
    assert sign_in(client, "admin", "my-own-pw").status_code == 302
    response = select(client, victim)
    assert response["Location"].startswith("/login/")
    page = client.get(response["Location"])
    assert any("Sign in to Default" in m for m in messages_of(page))
    assert 'value="admin"' in page.content.decode()  # the username is pre-filled
    assert _signed_in_as(client) is None
    assert client.get("/")["Location"].startswith("/login/")
    assert client.get("/snapshots/").status_code in (302, 403)
    assert client.post("/admin/password_change/", {}).status_code == 302  # to the login
    assert _user(victim, "admin").password == victim_hash


def test_switching_between_two_signed_in_databases_needs_no_new_sign_in(kim_in_alpha_and_beta):
    client, a, b = kim_in_alpha_and_beta
    for path in (a, b, a, b):
        assert select(client, path)["Location"] == "/"
        assert client.get("/").status_code == 200
        assert _signed_in_as(client) == "kim"
        assert client.session["_auth_user_id"] == str(_user(path, "kim").pk)


def test_a_password_change_ends_that_database_sign_in_of_every_session(kim_in_alpha_and_beta):
    client, a, b = kim_in_alpha_and_beta
    other = Client()
    select(other, a)
    sign_in(other, "kim", "pw-a")
    kim = _user(a, "kim")
    kim.set_password("changed-elsewhere")
    kim.save(using=engines.register(str(a)).alias)
    # Both sessions working on Alpha are signed out there at their next request.
    assert other.get("/")["Location"].startswith("/login/")
    select(client, a)
    assert client.get("/")["Location"].startswith("/login/")
    # Beta's sign-in is untouched.
    select(client, b)
    assert client.get("/").status_code == 200 and _signed_in_as(client) == "kim"


def test_a_deactivated_or_deleted_user_loses_the_sign_in_at_once(kim_in_alpha_and_beta):
    client, a, b = kim_in_alpha_and_beta
    conn = sqlite3.connect(b)
    conn.execute("UPDATE accounts_user SET is_active = 0 WHERE username = 'kim'")
    conn.commit()
    conn.close()
    assert client.get("/")["Location"].startswith("/login/")
    assert client.session["selected_db_path"] == str(b)  # still working on Beta
    select(client, a)
    assert client.get("/").status_code == 200


def test_user_id_from_one_file_never_authenticates_as_another_person(make_database):
    a = make_database(name="A", users=[("alice", "pw", True)])
    b = make_database(name="B", users=[("bob", "pw", True)])  # bob has id 1 in B
    assert _user(a, "alice").pk == _user(b, "bob").pk
    client = Client()
    select(client, a)
    sign_in(client, "alice", "pw")
    select(client, b)
    assert "_auth_user_id" not in client.session
    assert client.get("/")["Location"].startswith("/login/")
    assert _signed_in_as(client) is None


def test_last_db_path_is_saved_when_a_signed_in_user_selects(kim_in_alpha_and_beta):
    client, a, _ = kim_in_alpha_and_beta
    select(client, a)
    kim_in_a = _user(a, "kim")
    assert kim_in_a.last_db_path == str(a)
    assert kim_in_a.last_db_display_name == "Alpha"
    page = client.get("/select-db").content.decode()
    assert f'value="{a}" checked' in page


def test_login_is_audited_in_the_selected_database(make_database):
    from audit.models import AuditEntry

    a = make_database(name="A", users=[("eve", "pw", False)])
    client = Client()
    select(client, a)
    sign_in(client, "eve", "wrong")
    sign_in(client, "eve", "pw")
    with state.override(engines.register(str(a)).alias):
        actions = list(AuditEntry.objects.values_list("action", "outcome", "username"))
    assert ("auth.login_failed", "failure", "eve") in actions
    assert ("auth.login", "success", "eve") in actions
