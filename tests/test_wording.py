"""Wording (issue 18): proper plurals, no "Reverted to X" when nothing was switched, and a
visitor refused a migration told what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.template.loader import render_to_string
from django.test import Client, RequestFactory

from dbselect import recovery
from migrating import service as migrating_service
from snapshots import service
from tests.helpers import messages_of, select, sign_in

ADMIN = ("admin", "admin-pw", True)


def _signed_in(path: Path) -> Client:
    client = Client()
    select(client, path)
    sign_in(client, ADMIN[0], ADMIN[1])
    return client


# -- plurals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "text"), [(1, "1 snapshot,"), (2, "2 snapshots,")])
def test_snapshot_list_counts_its_snapshots_in_words(make_database, count, text):
    path = make_database(users=[ADMIN], label="alpha")
    for i in range(count):
        service.create_snapshot(str(path), note=f"n{i}")
    page = _signed_in(path).get("/snapshots/").content.decode()
    assert text in page


@pytest.mark.parametrize(
    ("count", "text"),
    [(1, "Retention applied: 1 snapshot deleted."), (2, "Retention applied: 2 snapshots deleted.")],
)
def test_retention_message_counts_in_words(make_database, count, text):
    path = make_database(users=[ADMIN], label="alpha")
    client = _signed_in(path)
    for i in range(count + 1):
        service.create_snapshot(str(path), note=f"n{i}")
    client.post("/snapshots/retention", {"max_snapshots": "1", "retention_days": ""})
    response = client.post("/snapshots/prune", follow=True)
    assert text in messages_of(response)
    assert "(s)" not in " ".join(messages_of(response))


@pytest.mark.parametrize(
    ("count", "text"), [(1, "Applied 1 migration;"), (2, "Applied 2 migrations;")]
)
def test_applied_migrations_are_counted_in_words(make_database, monkeypatch, count, text):
    home = make_database(name="Home Base", users=[ADMIN], label="default")
    target = make_database(name="Other", users=[ADMIN], label="other")
    client = _signed_in(home)
    outcome = migrating_service.MigrationOutcome(
        path=str(target), applied=tuple(("companies", f"000{i}_x") for i in range(count))
    )
    monkeypatch.setattr(migrating_service, "migrate_database", lambda *a, **k: outcome)
    response = client.post("/select-db/migrate", {"path": str(target)}, follow=True)
    notes = messages_of(response)
    assert any(m.startswith(text) for m in notes), notes
    assert not any("(s)" in m for m in notes)


def test_inspection_counts_tables_and_indexes_in_words():
    request = RequestFactory().get("/database/")
    one = {"tables": [{"name": "t", "rows": 1, "bytes": 1}], "indexes": ["i"], "triggers": []}
    two = {"tables": [{"name": "a"}, {"name": "b"}], "indexes": ["i", "j"], "triggers": []}
    html = render_to_string("inspection/_details.html", {"inspection": one}, request)
    assert "1 table, 1 index;" in html
    html = render_to_string("inspection/_details.html", {"inspection": two}, request)
    assert "2 tables, 2 indexes;" in html


@pytest.mark.parametrize(("rows", "text"), [(1, "(1 row)"), (2, "(2 rows)")])
def test_bundle_page_counts_the_rows_that_refuse_an_import(rows, text):
    request = RequestFactory().get("/bundles/")
    html = render_to_string(
        "bundles/page.html",
        {"database_name": "X", "can_import": False, "domain_rows": rows},
        request,
    )
    assert f"already holds companies or projects {text}" in html


# -- the fallback banner ---------------------------------------------------------------------


def test_fallback_banner_says_reverted_only_when_the_session_was_switched():
    switched = recovery.fallback_banner("Home Base", "gone.", switched=True)
    assert switched.startswith("Your selected database could not be opened. Reverted to Home Base.")
    kept = recovery.fallback_banner("Home Base", "gone.")
    assert "Reverted" not in kept
    assert kept == (
        "The database you chose could not be opened; you are still working on Home Base. "
        "Reason: gone."
    )


def test_a_refused_choice_keeps_the_database_and_never_says_reverted(make_database, tmp_path):
    home = make_database(name="Home Base", users=[ADMIN], label="default")
    client = _signed_in(home)
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    notes = messages_of(select(client, junk))
    assert not any("Reverted" in m for m in notes), notes
    assert any("you are still working on Home Base" in m for m in notes), notes


# -- a migration refused to a visitor ----------------------------------------------------------


def test_a_signed_out_visitor_refused_a_migration_is_told_to_sign_in(make_database):
    make_database(name="Home Base", users=[ADMIN], label="default")
    target = make_database(name="Other", users=[ADMIN], label="other")
    response = Client().post("/select-db/migrate", {"path": str(target)})
    assert response.status_code == 403
    [note] = [m for m in messages_of(response) if "migrations" in m]
    assert note.startswith("You are not signed in. Sign in as an administrator of an operator")
    assert "then select this database again to apply its migrations" in note


def test_a_signed_out_visitor_on_an_operator_database_gets_a_sign_in_link(make_database):
    home = make_database(name="Home Base", users=[ADMIN], label="default")
    target = make_database(name="Other", users=[ADMIN], label="other")
    client = Client()
    select(client, home)  # selected, not signed in
    response = client.post("/select-db/migrate", {"path": str(target)})
    assert response.status_code == 403
    html = response.content.decode()
    assert 'href="/login/?next=%2Fselect-db"' in html
    assert "Sign in as an administrator</a> of this operator database" in html


def test_a_signed_in_clerk_refused_a_migration_is_told_who_may(make_database):
    clerk = ("clerk", "clerk-pw", False)
    home = make_database(name="Home Base", users=[clerk], label="default")
    target = make_database(name="Other", users=[ADMIN], label="other")
    client = Client()
    select(client, home)
    sign_in(client, *clerk[:2])
    response = client.post("/select-db/migrate", {"path": str(target)})
    assert response.status_code == 403
    [note] = [m for m in messages_of(response) if "migrations" in m]
    assert note.startswith("You are signed in as clerk, who may not apply migrations")
