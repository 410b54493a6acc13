"""A selected file that breaks later: back to the previous database, with the banner."""

from __future__ import annotations

import os
import sqlite3

from django.test import Client

from dbselect import session as db_session
from tests.helpers import messages_of, remove_database, select, sign_in


def _session_on(make_database, *, previous: bool = True):
    client = Client()
    first = make_database(name="Safe Harbour", companies=["Safe Co"], users=[("op", "pw", False)])
    second = make_database(name="Fragile", companies=["Fragile Co"], users=[("op", "pw", False)])
    if previous:
        select(client, first)
        sign_in(client, "op", "pw")  # one sign-in per database
    select(client, second)
    sign_in(client, "op", "pw")
    assert ">Fragile Co</a>" in client.get("/companies/").content.decode()
    return client, first, second


def _banner(response) -> str:
    return next(m for m in messages_of(response) if m.startswith("Your selected database"))


def test_deleted_file_reverts_to_the_previous_database(make_database):
    client, first, second = _session_on(make_database)
    remove_database(second)
    response = client.get("/companies/", follow=True)
    assert response.status_code == 200
    assert _banner(response) == (
        "Your selected database could not be opened. Reverted to Safe Harbour. "
        "Reason: The database file no longer exists."
    )
    page = response.content.decode()
    assert ">Safe Co</a>" in page and ">Fragile Co</a>" not in page
    assert client.session[db_session.SELECTED_PATH] == str(first)
    assert not second.exists()


def test_truncated_file_reverts_with_the_reason(make_database):
    client, first, second = _session_on(make_database)
    size = second.stat().st_size
    with open(second, "r+b") as fh:
        fh.truncate(size // 2 + 100)
    response = client.get("/", follow=True)
    # Noticed from its size (it shrank), told by SQLite itself: the file is never read raw.
    banner = _banner(response)
    assert "truncated" in banner or "malformed" in banner
    assert client.session[db_session.SELECTED_PATH] == str(first)


def test_replaced_file_is_never_used_silently(make_database, tmp_path):
    client, first, second = _session_on(make_database)
    impostor = make_database(name="Impostor", companies=["Impostor Co"])
    os.replace(impostor, second)
    response = client.get("/companies/", follow=True)
    assert "replaced" in _banner(response)
    assert ">Impostor Co</a>" not in response.content.decode()
    assert client.session[db_session.SELECTED_PATH] == str(first)


def test_a_post_is_not_run_on_the_fallback_database(make_database):
    client, first, second = _session_on(make_database)
    remove_database(second)
    response = client.post("/companies/new/", {"name": "Meant For Fragile"})
    assert response.status_code == 302
    conn = sqlite3.connect(first)
    names = [r[0] for r in conn.execute("SELECT name FROM companies_company")]
    conn.close()
    assert "Meant For Fragile" not in names


def test_without_previous_database_the_session_returns_to_the_selector(make_database):
    client, _, second = _session_on(make_database, previous=False)
    remove_database(second)
    response = client.get("/companies/")
    assert response["Location"].startswith("/select-db")
    page = client.get(response["Location"])
    assert any("no longer exists" in m for m in messages_of(page))
    assert db_session.SELECTED_PATH not in client.session


def test_the_fallback_redirect_never_leaves_the_site(make_database):
    """GET //evil.example/ answered by the fallback must not redirect to evil.example."""
    client, first, second = _session_on(make_database)
    remove_database(second)
    response = client.get("/", PATH_INFO="//evil.example/")
    assert response.status_code == 302
    assert not response["Location"].startswith("//")
    assert client.session[db_session.SELECTED_PATH] == str(first)
