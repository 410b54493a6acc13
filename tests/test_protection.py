"""Protected databases and maintenance mode.

An admin marks a database protected: every write is refused for everybody (403 page, nothing
saved), admins included, until an admin switches on maintenance mode for themselves; their
writes are then allowed until the grant expires, shown as a banner, and each is audited.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from django.test import Client

from dbselect import engines, protection
from tests.helpers import company_names, select, sign_in


@pytest.fixture
def protected(make_database):
    """A protected database with an admin and a clerk, each signed in in their own session."""
    db = make_database(
        name="Vault",
        companies=["Existing Co"],
        users=[("boss", "pw-boss-123", True), ("clerk", "pw-clerk-123", False)],
    )
    boss, clerk = Client(), Client()
    for client, (name, pw) in ((boss, ("boss", "pw-boss-123")), (clerk, ("clerk", "pw-clerk-123"))):
        select(client, db)
        assert sign_in(client, name, pw).status_code == 302
    response = boss.post("/database/protection", {"action": "protect"})
    assert response.status_code == 302
    return db, boss, clerk


def _audit(db) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT action, username, detail FROM audit_auditentry ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def test_writes_to_a_protected_database_are_refused_for_everybody(protected):
    db, boss, clerk = protected
    for client in (clerk, boss):
        response = client.post("/companies/new/", {"name": "Sneaky Co", "country": "X"})
        assert response.status_code == 403
        page = response.content.decode()
        assert "This database is protected" in page and "Your change was not saved." in page
    assert "Sneaky Co" not in company_names(db)
    assert clerk.get("/companies/").status_code == 200  # reading goes on
    denied = [row for row in _audit(db) if row[0] == "protection.denied"]
    assert {row[1] for row in denied} == {"boss", "clerk"}


def test_maintenance_mode_lets_that_admin_write_until_it_ends_and_audits_it(protected):
    db, boss, clerk = protected
    assert boss.post("/database/protection", {"action": "maintenance-on", "minutes": "5"})
    page = boss.get("/companies/").content.decode()
    assert "Maintenance mode is on for you until" in page
    assert boss.post("/companies/new/", {"name": "Fixed Co", "country": "X"}).status_code == 302
    assert "Fixed Co" in company_names(db)
    # Only the admin who holds the grant: the clerk is still refused.
    assert clerk.post("/companies/new/", {"name": "Clerk Co", "country": "X"}).status_code == 403
    [write] = [row for row in _audit(db) if row[0] == "protection.write"]
    assert write[1] == "boss" and "INSERT companies_company" in write[2]
    boss.post("/database/protection", {"action": "maintenance-off"})
    assert boss.post("/companies/new/", {"name": "Late Co", "country": "X"}).status_code == 403
    assert "Late Co" not in company_names(db)


def test_a_maintenance_grant_expires(protected):
    db, boss, _ = protected
    alias = engines.register(str(db)).alias
    boss.post("/database/protection", {"action": "maintenance-on", "minutes": "5"})
    from django.contrib.auth import get_user_model

    boss_id = get_user_model()._default_manager.db_manager(alias).get(username="boss").pk
    # The grant ran out: its expiry is in the past.
    protection.SystemSetting.set_value(
        f"{protection.GRANT_PREFIX}{boss_id}", f"{time.time() - 1:.0f}", using=alias
    )
    assert boss.post("/companies/new/", {"name": "Expired Co", "country": "X"}).status_code == 403
    assert "Expired Co" not in company_names(db)
    # The banner (kept in the session) goes once its time has passed.
    session = boss.session
    session["maintenance_banner"] = {**session["maintenance_banner"], "until": time.time() - 1}
    session.save()
    assert "Maintenance mode is on" not in boss.get("/companies/").content.decode()


def test_only_admins_of_the_database_may_change_protection(protected):
    _, _, clerk = protected
    assert clerk.get("/database/protection").status_code == 403
    assert clerk.post("/database/protection", {"action": "unprotect"}).status_code == 403
    assert clerk.post("/database/protection", {"action": "maintenance-on"}).status_code == 403


def test_signing_in_still_works_on_a_protected_database(protected):
    db, _, _ = protected
    client = Client()
    select(client, db)
    assert sign_in(client, "clerk", "pw-clerk-123").status_code == 302
    assert client.get("/").status_code == 200
