"""Who may do what: server-wide powers for operators, one rate limit for every sign-in form.

An operator is an administrator signed in, in this browser session, to an operator database
(DBSELECT["OPERATOR_DATABASES"], default databases/default). The admin of any other file,
including one the visitor made, has no server-wide power.
"""

from __future__ import annotations

import pytest
from django.test import Client

from dbselect import engines
from tests.helpers import select, sign_in


@pytest.fixture
def outsider(make_database) -> Client:
    """The admin of a file they made themselves (not an operator database)."""
    mine = make_database(name="Mine", users=[("admin", "my-own-pw", True)])
    client = Client()
    select(client, mine)
    assert sign_in(client, "admin", "my-own-pw").status_code == 302
    return client


@pytest.fixture
def operator(make_database) -> tuple[Client, str]:
    """An admin signed in to databases/default of the test's folder."""
    default = make_database(name="Default", users=[("root", "pw-root-123", True)], label="default")
    client = Client()
    select(client, default)
    assert sign_in(client, "root", "pw-root-123").status_code == 302
    return client, str(default)


def test_operator_only_views_refuse_admins_of_other_databases(outsider, make_database):
    shared = str(make_database(name="Shared"))
    engines.register(shared)
    assert outsider.get("/admin/engines/").status_code == 403
    assert outsider.post("/admin/engines/dispose", {"path": shared}).status_code == 403
    assert outsider.post("/admin/engines/dispose-idle", {}).status_code == 403
    assert engines.get(shared) is not None  # nothing was disposed
    assert "engines-link" not in outsider.get("/").content.decode()


def test_operators_see_the_engines_page(operator):
    client, _ = operator
    assert client.get("/admin/engines/").status_code == 200
    assert "engines-link" in client.get("/").content.decode()


def test_operator_power_stays_while_working_on_another_database(operator, make_database):
    client, _ = operator
    other = make_database(name="Other", users=[("kim", "pw-kim-123", False)])
    select(client, other)
    sign_in(client, "kim", "pw-kim-123")
    assert client.get("/admin/engines/").status_code == 200


def test_operator_power_ends_with_a_password_change_in_the_operator_database(operator):
    from django.contrib.auth import get_user_model

    client, default = operator
    alias = engines.register(default).alias
    user = get_user_model()._default_manager.db_manager(alias).get(username="root")
    user.set_password("changed-elsewhere")
    user.save(using=alias)
    assert client.get("/admin/engines/").status_code in (302, 403)


def test_operator_databases_are_configurable(outsider, make_database, settings):
    mine = make_database(name="Ops", users=[("ops", "pw-ops-123", True)])
    settings.DBSELECT = {**settings.DBSELECT, "OPERATOR_DATABASES": [mine]}
    client = Client()
    select(client, mine)
    sign_in(client, "ops", "pw-ops-123")
    assert client.get("/admin/engines/").status_code == 200
    assert outsider.get("/admin/engines/").status_code == 403


def test_wrong_passwords_at_the_admin_sign_in_are_rate_limited(make_database):
    db = make_database(name="Guarded", users=[("root", "right-pw-123", True)])
    client = Client()
    select(client, db)
    statuses = [
        client.post("/admin/login/", {"username": "root", "password": f"wrong-{i}"}).status_code
        for i in range(10)
    ]
    assert statuses[:5] == [200] * 5
    assert statuses[5:] == [429] * 5
    # The right password is not confirmed while limited, on either sign-in form.
    blocked = client.post("/admin/login/", {"username": "root", "password": "right-pw-123"})
    assert blocked.status_code == 429
    assert (
        client.post("/login/", {"username": "root", "password": "right-pw-123"}).status_code == 429
    )


def test_correct_sign_ins_are_never_counted(make_database):
    db = make_database(name="Busy", users=[("kim", "pw-kim-123", False)])
    for _ in range(8):
        client = Client()
        select(client, db)
        assert sign_in(client, "kim", "pw-kim-123").status_code == 302
