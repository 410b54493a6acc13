"""Privacy before sign-in: in production nobody sees what others selected, or browses outside roots.

The machine's selector history (instance/db_selector.json: recent paths, last used, last
browsed folder) is shared by everyone on the machine; in production only operators see it and
every browser session sees its own. Production also requires DBSELECT_ALLOWED_ROOTS.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import ERROR, run_checks
from django.test import Client

from dbselect import selector_cache
from tests.helpers import select, sign_in

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def production(settings, tmp_path: Path) -> Path:
    """NUKEWORKS_ENV=production with the test's folder as the only allowed root."""
    settings.NUKEWORKS_ENV = "production"
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.DBSELECT = {**settings.DBSELECT, "ALLOWED_ROOTS": [str(tmp_path)]}
    return tmp_path


def _selector(client: Client) -> str:
    response = client.get("/select-db")
    assert response.status_code == 200
    return response.content.decode()


def test_new_visitor_does_not_see_other_sessions_recent_paths_or_last_used(
    production, make_database
):
    alice_db = make_database(name="Alice's site")
    alice = Client()
    assert select(alice, alice_db).status_code == 302
    # The machine still remembers it (for operators)…
    assert selector_cache.load()["recent_paths"] == [str(alice_db)]
    assert selector_cache.load()["global_default_path"] == str(alice_db)

    # …but a new visitor sees neither the path, nor its folder, nor a "last used" entry.
    page = _selector(Client())
    assert str(alice_db) not in page
    assert str(alice_db.parent) not in page
    assert "Last used" not in page
    assert "<legend>Recent</legend>" not in page
    browsed = Client().get("/select-db/browse").json()
    assert browsed["dir"] != str(alice_db.parent)


def test_a_visitor_sees_their_own_recent_selections(production, make_database):
    first, second = make_database(name="First"), make_database(name="Second")
    other = make_database(name="Someone else's")
    me, someone = Client(), Client()
    select(me, first)
    select(me, second)
    select(someone, other)

    page = _selector(me)
    assert "<legend>Recent</legend>" in page
    assert str(first) in page and str(second) in page
    assert "Last used" in page
    assert f'value="{second}" checked' in page
    assert str(other) not in page
    # The browse widget opens where this session last selected a file.
    assert f'data-start="{second.parent}"' in page

    theirs = _selector(someone)
    assert str(other) in theirs
    assert str(first) not in theirs and str(second) not in theirs


def test_the_session_history_survives_signing_in(production, make_database):
    path = make_database(name="Mine", users=[("kim", "pw-kim-123", False)])
    client = Client()
    select(client, path)
    assert sign_in(client, "kim", "pw-kim-123").status_code == 302
    assert str(path) in _selector(client)


def test_an_operator_sees_the_machine_history(production, make_database):
    visitor_db = make_database(name="Visitor's")
    select(Client(), visitor_db)
    # databases/default: its admins are operators (dbselect.permissions).
    default = make_database(name="Default", users=[("boss", "pw-boss-123", True)], label="default")
    operator = Client()
    select(operator, default)
    sign_in(operator, "boss", "pw-boss-123")
    page = _selector(operator)
    assert str(visitor_db) in page


def test_outside_production_the_machine_history_is_shared_as_specified(make_database):
    path = make_database(name="Shared")
    select(Client(), path)
    page = _selector(Client())
    assert "Last used" in page
    assert f'value="{path}" checked' in page


def test_browse_outside_the_allowed_roots_is_refused_before_sign_in(production):
    client = Client()
    response = client.get("/select-db/browse", {"dir": "/etc"})
    assert response.status_code == 400
    assert response.json() == {"error": "This location is outside the folders this server allows."}
    assert client.get("/select-db/browse", {"dir": str(production)}).status_code == 200
    refused = select(client, "/etc/passwd")
    assert refused.status_code == 400
    assert "outside the folders this server allows" in refused.content.decode()


def test_browse_starts_inside_the_allowed_roots(settings, tmp_path):
    """The widget opens in a folder the server lists, not in databases/ outside the roots."""
    root = tmp_path / "srv"
    root.mkdir()
    settings.NUKEWORKS_ENV = "production"
    settings.DBSELECT = {**settings.DBSELECT, "ALLOWED_ROOTS": [str(root)]}
    assert f'data-start="{root}"' in _selector(Client())
    listed = Client().get("/select-db/browse", {"dir": str(root)})
    assert listed.status_code == 200


def _check_ids(**kwargs: bool) -> dict[str, int]:
    return {m.id: m.level for m in run_checks(**kwargs) if m.id and m.id.startswith("dbselect.")}


def test_production_without_allowed_roots_is_a_check_error(settings):
    settings.NUKEWORKS_ENV = "production"
    settings.DBSELECT = {**settings.DBSELECT, "ALLOWED_ROOTS": []}
    # An error for every command that runs checks, not only under --deploy.
    assert _check_ids() == {"dbselect.E003": ERROR}
    assert _check_ids(include_deployment_checks=True) == {"dbselect.E003": ERROR}

    settings.DBSELECT = {**settings.DBSELECT, "ALLOWED_ROOTS": ["/srv/nukeworks"]}
    assert _check_ids(include_deployment_checks=True) == {}


def test_development_without_allowed_roots_keeps_the_open_behaviour(settings):
    settings.NUKEWORKS_ENV = "development"
    settings.DBSELECT = {**settings.DBSELECT, "ALLOWED_ROOTS": []}
    assert _check_ids() == {}
    assert set(_check_ids(include_deployment_checks=True)) == {"dbselect.W001"}


def test_manage_py_refuses_production_without_allowed_roots(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUKEWORKS_", "DBSELECT_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
            "NUKEWORKS_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "NUKEWORKS_INSTANCE_DIR": str(tmp_path / "instance"),
            "NUKEWORKS_DATABASES_DIR": str(tmp_path / "databases"),
            "NUKEWORKS_DEFAULT_DB": str(tmp_path / "default.sqlite"),
            "SESSION_FILE_PATH": str(tmp_path / "sessions"),
            "DBSELECT_REGISTER_SCANNED": "false",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "dbselect.E003" in result.stderr
    assert "DBSELECT_ALLOWED_ROOTS" in result.stderr
