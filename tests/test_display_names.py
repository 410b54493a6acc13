"""Who may name a database at /select-db: anyone when it has no name, else only its admins.

Any visitor, signed out, could overwrite the display name stored in any database by typing a
name in the selector (which then listed two "Default"s). Names are read back from the files
with sqlite3, never through the application.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from django.test import Client

from dbselect import session as db_session
from tests.helpers import messages_of, select, sign_in

ADMIN = ("admin", "admin-pw", True)
CLERK = ("clerk", "clerk-pw", False)


def _stored_name(path: Path) -> str | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT value FROM system_settings WHERE key = 'db_display_name'"
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else row[0]


def _rename_audit(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT outcome, detail FROM audit_auditentry WHERE action = 'database.rename'"
        ).fetchall()
    finally:
        conn.close()


def _refusal(name: str) -> str:
    return f"This database is already named “{name}”; only its administrators can rename it."


def _signed_in(path: Path, username: str, password: str) -> Client:
    client = Client()
    select(client, path)
    sign_in(client, username, password)
    return client


def test_an_anonymous_visitor_cannot_rename_a_named_database(make_database):
    path = make_database(name="Default", users=[ADMIN], label="default")
    visitor = Client()

    response = select(visitor, path, display_name="Hijacked")

    assert response.status_code == 302  # the selection itself still succeeds
    assert visitor.session[db_session.SELECTED_PATH] == str(path)
    assert visitor.session[db_session.SELECTED_NAME] == "Default"
    assert _stored_name(path) == "Default"
    page = visitor.get(response["Location"])  # the login page shows the messages
    assert _refusal("Default") in messages_of(page)
    assert "Now working on Default." in messages_of(page)
    [(outcome, detail)] = _rename_audit(path)
    assert outcome == "denied" and "Hijacked" in detail


def test_the_selector_no_longer_lists_two_defaults(make_database):
    """The reported bug: a visitor renamed `other` to "Default"."""
    make_database(name="Default", label="default")
    other = make_database(name="Plant North", label="other")

    select(Client(), other, display_name="Default")

    assert _stored_name(other) == "Plant North"
    page = Client().get("/select-db").content.decode()
    assert page.count("<strong>Default</strong>") == 1
    assert "<strong>Plant North</strong>" in page


def test_anyone_may_set_a_missing_name(make_database):
    path = make_database(name=None, label="fresh")
    visitor = Client()

    response = select(visitor, path, display_name="  Site North  ")

    assert response.status_code == 302
    assert _stored_name(path) == "Site North"
    assert visitor.session[db_session.SELECTED_NAME] == "Site North"
    assert [outcome for outcome, _ in _rename_audit(path)] == ["success"]
    # Once named, the next visitor cannot change it any more.
    select(Client(), path, display_name="Site South")
    assert _stored_name(path) == "Site North"


def test_a_blank_stored_name_counts_as_missing(make_database):
    path = make_database(name="   ", label="blank")
    select(Client(), path, display_name="Named At Last")
    assert _stored_name(path) == "Named At Last"


def test_an_admin_of_that_database_can_rename_it(make_database):
    path = make_database(name="Old Name", users=[ADMIN], label="site")
    admin = _signed_in(path, "admin", "admin-pw")

    response = select(admin, path, display_name="New Name")

    assert response.status_code == 302
    assert _stored_name(path) == "New Name"
    assert admin.session[db_session.SELECTED_NAME] == "New Name"
    page = admin.get("/select-db")
    assert not any("only its administrators" in m for m in messages_of(page))
    assert "<strong>New Name</strong>" in page.content.decode()
    [(outcome, detail)] = _rename_audit(path)
    assert outcome == "success" and "Old Name" in detail and "New Name" in detail


def test_a_non_admin_user_of_that_database_cannot_rename_it(make_database):
    path = make_database(name="Old Name", users=[CLERK], label="site")
    clerk = _signed_in(path, "clerk", "clerk-pw")

    select(clerk, path, display_name="Clerk Was Here")

    assert _stored_name(path) == "Old Name"
    assert _refusal("Old Name") in messages_of(clerk.get("/select-db"))


def test_an_admin_of_another_database_cannot_rename_this_one(make_database):
    """Admin rights belong to one file: a same-named admin elsewhere is nobody here."""
    mine = make_database(name="Mine", users=[ADMIN], label="mine")
    theirs = make_database(name="Theirs", users=[ADMIN], label="theirs")
    admin = _signed_in(mine, "admin", "admin-pw")

    response = select(admin, theirs, display_name="Taken Over")

    assert response.status_code == 302
    assert _stored_name(theirs) == "Theirs"
    assert admin.session[db_session.SELECTED_PATH] == str(theirs)
    page = admin.get(response["Location"])
    assert _refusal("Theirs") in messages_of(page)


def test_the_refusal_message_is_escaped(make_database):
    path = make_database(name="<b>Plant</b>", label="plant")
    visitor = Client()
    response = select(visitor, path, display_name="Other")
    page = visitor.get(response["Location"]).content.decode()
    assert "&lt;b&gt;Plant&lt;/b&gt;" in page and "<b>Plant</b>" not in page
    assert _stored_name(path) == "<b>Plant</b>"


def test_typing_the_current_name_or_nothing_changes_nothing(make_database):
    path = make_database(name="Same", label="same")
    for typed in ("Same", "  Same ", "", "   "):
        visitor = Client()
        response = select(visitor, path, display_name=typed)
        assert not any(
            "only its administrators" in m for m in messages_of(visitor.get(response["Location"]))
        )
    assert _stored_name(path) == "Same"
    assert _rename_audit(path) == []
