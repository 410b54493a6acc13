"""A login belongs to one database file: saved preferences and re-binding on a switch."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from dbselect import registry, state
from tests.helpers import messages_of, select, sign_in


def _user(path, username):
    alias = registry.register(str(path)).alias
    with state.override(alias):
        return get_user_model().objects.get(username=username)


@pytest.fixture
def kim_moved_from_alpha_to_beta(make_database):
    """kim signs in to Alpha, then switches to Beta; return (client, alpha, beta)."""
    a = make_database(name="Alpha", users=[("kim", "pw", False)])
    b = make_database(name="Beta", users=[("kim", "pw", False)])
    client = Client()
    select(client, a)
    sign_in(client, "kim", "pw")
    select(client, b)
    return client, a, b


def test_last_db_path_is_saved_after_selection_while_logged_in(kim_moved_from_alpha_to_beta):
    _, _, b = kim_moved_from_alpha_to_beta
    kim_in_b = _user(b, "kim")
    assert kim_in_b.last_db_path == str(b)
    assert kim_in_b.last_db_display_name == "Beta"


def test_logged_in_user_sees_their_last_database_as_default(kim_moved_from_alpha_to_beta):
    client, a, _ = kim_moved_from_alpha_to_beta
    select(client, a)  # kim in A now remembers A
    page = client.get("/select-db").content.decode()
    assert f'value="{a}" checked' in page


def test_switch_rebinds_the_login_by_username(make_database):
    # alice is id 1 in A; in B, id 1 is bob and alice is id 2.
    a = make_database(name="A", users=[("alice", "pw-a", False)])
    b = make_database(name="B", users=[("bob", "pw-b", False), ("alice", "pw-b2", False)])
    client = Client()
    select(client, a)
    sign_in(client, "alice", "pw-a")
    select(client, b)
    page = client.get("/").content.decode()
    assert "Log out alice" in page
    assert client.session["_auth_user_id"] == str(_user(b, "alice").pk)


def test_user_id_from_one_file_never_authenticates_as_another_person(make_database):
    a = make_database(name="A", users=[("alice", "pw", True)])
    b = make_database(name="B", users=[("bob", "pw", True)])  # bob has id 1 in B
    assert _user(a, "alice").pk == _user(b, "bob").pk
    client = Client()
    select(client, a)
    sign_in(client, "alice", "pw")
    response = select(client, b)
    assert response["Location"].startswith("/login/")
    follow = client.get(response["Location"])
    assert any("alice" in m and "no active account" in m for m in messages_of(follow))
    assert "_auth_user_id" not in client.session
    assert client.get("/")["Location"].startswith("/login/")
    assert "Log out bob" not in client.get("/select-db").content.decode()


def test_inactive_user_in_the_new_file_is_logged_out(make_database):
    a = make_database(name="A", users=[("dana", "pw", False)])
    b = make_database(name="B", users=[("dana", "pw", False)])
    alias = registry.register(str(b)).alias
    with state.override(alias):
        get_user_model().objects.filter(username="dana").update(is_active=False)
    client = Client()
    select(client, a)
    sign_in(client, "dana", "pw")
    select(client, b)
    assert "_auth_user_id" not in client.session
    assert client.session["selected_db_path"] == str(b)


def test_login_is_audited_in_the_selected_database(make_database):
    from audit.models import AuditEntry

    a = make_database(name="A", users=[("eve", "pw", False)])
    client = Client()
    select(client, a)
    sign_in(client, "eve", "wrong")
    sign_in(client, "eve", "pw")
    with state.override(registry.register(str(a)).alias):
        actions = list(AuditEntry.objects.values_list("action", "outcome", "username"))
    assert ("auth.login_failed", "failure", "eve") in actions
    assert ("auth.login", "success", "eve") in actions
