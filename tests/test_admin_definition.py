"""One definition of "admin": accounts.models.User.is_admin (active, and staff or superuser).

Every admin power asks it through dbselect.permissions (is_admin, admin_required, operators):
a superuser without is_staff is an admin everywhere, an inactive staff user nowhere.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.test import Client, RequestFactory

from dbselect import engines, permissions, protection, state
from dbselect.protection.views import protection_page
from snapshots.views import snapshot_create
from tests.helpers import company_names, select, sign_in

PASSWORD = "pw-admin-123"


def _add_user(path: Path, username: str, *, is_staff: bool, is_superuser: bool) -> None:
    engine = engines.register(str(path))
    with state.override(engine.alias):
        get_user_model().objects.create_user(
            username=username, password=PASSWORD, is_staff=is_staff, is_superuser=is_superuser
        )
    connections[engine.alias].close()


def _deactivate(path: Path, username: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("UPDATE accounts_user SET is_active = 0 WHERE username = ?", (username,))
        conn.commit()
    finally:
        conn.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_protected(path: Path) -> bool:
    alias = engines.register(str(path)).alias
    try:
        return protection.is_protected(alias)
    finally:
        connections[alias].close()


def _snapshots(path: Path) -> list[Path]:
    folder = path.parent / "snapshots"
    return sorted(folder.glob("*.sqlite")) if folder.is_dir() else []


@pytest.fixture
def home(make_database) -> Path:
    """databases/default (an operator database) with one company and no users yet."""
    return make_database(name="Home Base", companies=["Old Co"], label="default")


def _signed_in(path: Path, username: str) -> Client:
    client = Client()
    select(client, path)
    assert sign_in(client, username, PASSWORD).status_code == 302
    return client


@pytest.mark.parametrize(
    ("is_staff", "is_superuser", "active", "admin"),
    [
        (True, False, True, True),
        (False, True, True, True),
        (True, True, True, True),
        (False, False, True, False),
        (True, False, False, False),
        (False, True, False, False),
    ],
)
def test_is_admin_is_the_user_models_own_definition(is_staff, is_superuser, active, admin):
    user = get_user_model()(
        username="u", is_staff=is_staff, is_superuser=is_superuser, is_active=active
    )
    assert user.is_admin is admin
    assert permissions.is_admin(user) is admin


def test_a_superuser_without_is_staff_restores_migrates_and_protects(home, make_old_database):
    _add_user(home, "super", is_staff=False, is_superuser=True)
    client = _signed_in(home, "super")

    # Restore a snapshot of the database it works on.
    assert client.post("/snapshots/create", {"note": "known good"}).status_code == 302
    [snapshot] = _snapshots(home)
    assert client.post("/companies/new/", {"name": "New Co", "country": "X"}).status_code == 302
    assert client.post(f"/snapshots/{snapshot.name}/restore").status_code == 302
    assert company_names(home) == {"Old Co"}

    # Approve migrations of another file: as an operator (signed in to databases/default).
    old = make_old_database()
    plan = select(client, old).content.decode()
    assert 'action="/select-db/migrate"' in plan and "Apply migrations" in plan
    response = client.post("/select-db/migrate", {"path": str(old), "next": "/companies/"})
    assert response.status_code == 302 and response["Location"] == "/companies/"
    assert len(_snapshots(old)) == 1

    # The protection page of the database it works on (back on databases/default).
    select(client, home)
    assert client.get("/database/protection").status_code == 200
    assert client.post("/database/protection", {"action": "protect"}).status_code == 302
    assert _is_protected(home)


def test_an_inactive_staff_user_can_do_none_of_it(home, make_old_database):
    _add_user(home, "boss", is_staff=True, is_superuser=False)
    client = _signed_in(home, "boss")
    assert client.post("/snapshots/create", {"note": "known good"}).status_code == 302
    [snapshot] = _snapshots(home)
    old = make_old_database()
    before = _digest(old)

    _deactivate(home, "boss")

    assert client.post(f"/snapshots/{snapshot.name}/restore").status_code in (302, 403)
    assert client.post("/database/protection", {"action": "protect"}).status_code in (302, 403)
    assert client.post("/select-db/migrate", {"path": str(old)}).status_code == 403
    assert _snapshots(home) == [snapshot]  # no safety snapshot: nothing was restored
    assert not _is_protected(home)
    assert _digest(old) == before and _snapshots(old) == []


@pytest.mark.parametrize(
    "view", [snapshot_create, protection_page], ids=["snapshots", "protection"]
)
def test_admin_required_refuses_an_inactive_staff_user_it_is_handed(view, home):
    """Whatever the session layer did, the decorator itself asks is_admin: 403, never a run."""
    request = RequestFactory().post("/somewhere", {"action": "protect", "note": "x"})
    request.user = get_user_model()(username="boss", is_staff=True, is_active=False)
    request.session = {}
    with pytest.raises(PermissionDenied):
        view(request)
