"""Duplicating a database: `manage.py copydb` and the "Duplicate…" page, on real files.

A consistent copy taken while a writer keeps writing, its attachments carried (hard links),
a new display name, --schema-only (an empty domain, the admins kept), refusals that create
nothing, audit entries, and admins only.
"""

from __future__ import annotations

import io
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from dbselect.files.schema import SchemaState
from dbselect.files.validation import inspect_database
from payloads.store import PayloadStore
from provisioning import copies
from tests.copy_helpers import (
    ADMIN,
    CLERK,
    attach,
    audit,
    databases_dir,
    display_name,
    folder_listing,
    payload_file,
    quick_check,
    rows,
    signed_in,
)
from tests.helpers import select, sign_in

DOC = b"%PDF-1.4 contract " * 1000
DRAWING = b"\x89PNG drawing " * 500


@pytest.fixture
def source(make_database) -> Path:
    path = make_database(
        name="Plant A", companies=["Acme", "Globex"], users=[ADMIN, CLERK], label="plant-a"
    )
    attach(path, DOC, "contract.pdf")
    attach(path, DRAWING, "drawing.png")
    return path


def copydb(*args: str) -> str:
    out = io.StringIO()
    call_command("copydb", *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_copydb_copies_rows_attachments_and_names_the_copy(source):
    output = copydb("plant-a", "plant-b", "--display-name", "Plant B")
    copy = databases_dir() / "plant-b" / "nukeworks.sqlite"
    assert "Created copy “Plant B”" in output and "2 attachment file(s)" in output
    # Nothing else is in the new folder: no temporary file, no marker, no -wal left.
    assert sorted(p.name for p in copy.parent.iterdir() if not p.name.startswith(".")) == [
        "nukeworks.sqlite",
        "payloads",
        "snapshots",
    ]
    assert not [p for p in copy.parent.iterdir() if p.name.startswith(".nukeworks")]
    assert not (copy.parent / ".preparing.json").exists()
    assert copy.is_file() and quick_check(copy) == "ok"
    assert display_name(copy) == "Plant B" and display_name(source) == "Plant A"
    assert rows(copy, "SELECT name FROM companies_company ORDER BY name") == [
        ("Acme",),
        ("Globex",),
    ]
    assert {r[0] for r in rows(copy, "SELECT username FROM accounts_user")} == {"boss", "clerk"}
    # The attachments' files are in the copy's own store, shared by hard link (no extra space).
    for content in (DOC, DRAWING):
        carried = payload_file(copy, content)
        assert carried.read_bytes() == content
        assert os.stat(carried).st_ino == os.stat(payload_file(source, content)).st_ino
    assert PayloadStore.for_database(copy).root == copy.parent / "payloads"
    assert inspect_database(str(copy)).state is SchemaState.UP_TO_DATE
    # Audited in the source and in the copy.
    assert [o for o, _, _ in audit(source, "database.copy")] == ["success"]
    [(outcome, _, detail)] = audit(copy, "database.copy")
    assert outcome == "success" and str(source) in detail
    # The copy is a database of its own: selectable, and its users sign in.
    client = Client()
    assert select(client, copy).status_code == 302
    assert sign_in(client, "boss", ADMIN[1]).status_code == 302
    assert "Plant B" in client.get("/").content.decode()


def test_copydb_takes_a_path_and_defaults_the_display_name(source):
    copydb(str(source), "from-path")
    copy = databases_dir() / "from-path" / "nukeworks.sqlite"
    assert display_name(copy) == "From-Path"
    assert rows(copy, "SELECT count(*) FROM attachments_attachment") == [(2,)]


def test_a_copy_under_a_steady_writer_is_a_consistent_prefix(source):
    """A writer commits one numbered row after another during the copy: the copy holds rows
    1..k for some k and nothing after, passes quick_check, and carries its attachments."""
    stop = threading.Event()
    written = []
    started = threading.Event()

    def writer() -> None:
        conn = sqlite3.connect(source, timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        try:
            n = 0
            while not stop.is_set():
                n += 1
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO companies_company (name, is_vendor, is_owner, is_operator, "
                    "is_constructor, country, notes, website, created_at, updated_at) VALUES "
                    "(?, 0, 0, 0, 0, 'W', ?, '', datetime('now'), datetime('now'))",
                    (f"w-{n:06d}", "x" * 2000),
                )
                conn.execute("COMMIT")
                written.append(n)
                if n == 200:
                    started.set()
        finally:
            conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert started.wait(30)
        made = copies.duplicate(str(source), "steady", display_name="Steady")
        during = len(written)
    finally:
        stop.set()
        thread.join()
    copy = made.path
    assert quick_check(copy) == "ok"
    names = [r[0] for r in rows(copy, "SELECT name FROM companies_company WHERE country = 'W'")]
    numbers = sorted(int(n[2:]) for n in names)
    assert numbers, "the copy holds none of the writer's rows"
    assert numbers == list(range(1, len(numbers) + 1)), "a gap: not a consistent prefix"
    assert 200 <= len(numbers) <= during
    # The writer kept going while the copy was made, and the source has every row.
    assert len(written) > len(numbers)
    assert rows(source, "SELECT count(*) FROM companies_company WHERE country = 'W'") == [
        (len(written),)
    ]
    for content in (DOC, DRAWING):
        assert payload_file(copy, content).read_bytes() == content
    assert made.carried.linked == 2 and not made.carried.missing


def test_schema_only_keeps_the_admins_and_empties_the_domain(source):
    from dbselect import engines

    # A session and an API token in the source: neither travels to a schema-only copy.
    conn = sqlite3.connect(source)
    try:
        boss = conn.execute("SELECT id FROM accounts_user WHERE username='boss'").fetchone()[0]
        conn.execute(
            "INSERT INTO knox_authtoken (digest, token_key, user_id, created, expiry) "
            "VALUES (?, ?, ?, datetime('now'), NULL)",
            ("d" * 128, "k" * 15, boss),
        )
        conn.execute(
            "INSERT INTO django_session (session_key, session_data, expire_date) "
            "VALUES ('s1', 'x', datetime('now', '+1 day'))"
        )
        conn.execute(
            "INSERT INTO companies_project (name, company_id, status, notes, created_at, "
            "updated_at) SELECT 'P1', id, 'planned', '', datetime('now'), datetime('now') "
            "FROM companies_company LIMIT 1"
        )
        conn.commit()
    finally:
        conn.close()
    engines.dispose(str(source))
    copydb("plant-a", "template-x", "--schema-only", "--display-name", "Template")
    copy = databases_dir() / "template-x" / "nukeworks.sqlite"
    assert quick_check(copy) == "ok"
    assert inspect_database(str(copy)).state is SchemaState.UP_TO_DATE
    for table in (
        "companies_company",
        "companies_project",
        "attachments_attachment",
        "knox_authtoken",
        "django_session",
    ):
        assert rows(copy, f"SELECT count(*) FROM {table}") == [(0,)], table
    # Only its own creation is in the audit trail.
    assert [a for (a,) in rows(copy, "SELECT action FROM audit_auditentry")] == ["database.copy"]
    users = rows(copy, "SELECT username, password, is_staff FROM accounts_user")
    source_hash = rows(source, "SELECT password FROM accounts_user WHERE username='boss'")[0][0]
    assert users == [("boss", source_hash, 1)]
    assert display_name(copy) == "Template"
    assert not list(PayloadStore.for_database(copy).hashes())
    # The source is untouched.
    assert rows(source, "SELECT count(*) FROM companies_company") == [(2,)]
    assert rows(source, "SELECT count(*) FROM knox_authtoken") == [(1,)]
    # The admin signs in to the empty database with the same password.
    client = Client()
    select(client, copy)
    assert sign_in(client, "boss", ADMIN[1]).status_code == 302
    other = Client()
    select(other, copy)
    assert sign_in(other, "clerk", CLERK[1]).status_code == 200  # no such user there


@pytest.mark.parametrize("label", ["../up", "", "-dash", "a" * 41, "has space", ".archive"])
def test_a_bad_label_is_refused_and_nothing_is_created(source, label):
    before = folder_listing()
    with pytest.raises(CommandError, match="label"):
        copydb("plant-a", label)
    assert folder_listing() == before


def test_a_taken_label_is_refused_and_nothing_is_changed(source, make_database):
    other = make_database(name="Other", label="other")
    before = folder_listing()
    with pytest.raises(CommandError, match="exists already"):
        copydb("plant-a", "other")
    (databases_dir() / "busy").mkdir()
    (databases_dir() / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="not empty"):
        copydb("plant-a", "busy")
    assert folder_listing() == sorted([*before, "busy", "busy/notes.txt"])
    assert display_name(other) == "Other"
    assert [o for o, _, _ in audit(source, "database.copy")] == ["failure", "failure"]


def test_an_unknown_source_a_snapshot_or_an_archived_database_is_refused(source):
    before = folder_listing()
    with pytest.raises(CommandError, match="No database labelled"):
        copydb("nowhere", "x1")
    from snapshots import service

    snapshot = service.create_snapshot(str(source))
    with pytest.raises(CommandError, match="snapshot"):
        copydb(str(snapshot.path), "x2")
    assert not (databases_dir() / "x1").exists() and not (databases_dir() / "x2").exists()
    # Nor a snapshot's own snapshots: nothing is ever written into a snapshot file.
    with pytest.raises(CommandError, match="snapshot"):
        copydb(str(snapshot.path), "x3", "--from-snapshot", snapshot.name)
    assert service.get_snapshot(str(source), snapshot.name).sha256 == snapshot.sha256
    from snapshots.sqlite_copy import sha256_of

    assert sha256_of(snapshot.path) == snapshot.sha256
    assert [p for p in folder_listing() if "/snapshots" not in p] == before
    call_command("archivedb", "plant-a", "--noinput", stdout=io.StringIO())
    [archived] = list((databases_dir() / ".archive").iterdir())
    with pytest.raises(CommandError, match="archived"):
        copydb(str(archived / "nukeworks.sqlite"), "x4")
    assert not (databases_dir() / "x4").exists()


def test_a_failed_copy_leaves_nothing_behind(source, monkeypatch):
    from snapshots.sqlite_copy import CopyFailed

    def broken(*args, **kwargs):
        raise CopyFailed("the disk said no.")

    monkeypatch.setattr(copies, "copy_database", broken)
    before = folder_listing()
    with pytest.raises(CommandError, match="the disk said no"):
        copydb("plant-a", "broken")
    assert folder_listing() == before
    # An empty folder made beforehand for the label is left as empty as it was.
    (databases_dir() / "prepared").mkdir()
    with pytest.raises(CommandError, match="the disk said no"):
        copydb("plant-a", "prepared")
    assert folder_listing() == sorted([*before, "prepared"])
    outcomes = [(o, "the disk said no" in d) for o, _, d in audit(source, "database.copy")]
    assert outcomes == [("failure", True), ("failure", True)]
    monkeypatch.undo()
    copydb("plant-a", "prepared")
    assert display_name(databases_dir() / "prepared" / "nukeworks.sqlite") == "Prepared"


def test_the_duplicate_page_copies_the_current_database(source):
    client = signed_in(source, ADMIN)
    page = client.get("/database/duplicate")
    assert page.status_code == 200 and 'id="duplicate-form"' in page.content.decode()
    response = client.post(
        "/database/duplicate", {"label": "plant-c", "display_name": "Plant C"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/database/"
    copy = databases_dir() / "plant-c" / "nukeworks.sqlite"
    assert any("Created the database “Plant C”" in m for m in _messages(response))
    assert display_name(copy) == "Plant C"
    assert payload_file(copy, DOC).read_bytes() == DOC
    [(outcome, username, _)] = audit(source, "database.copy")
    assert (outcome, username) == ("success", "boss")
    # The new database is listed by the selector.
    assert "Plant C" in client.get("/select-db").content.decode()
    # Schema only from the page.
    client.post("/database/duplicate", {"label": "plant-d", "schema_only": "on"})
    empty = databases_dir() / "plant-d" / "nukeworks.sqlite"
    assert rows(empty, "SELECT count(*) FROM companies_company") == [(0,)]


def test_the_duplicate_page_refuses_bad_and_taken_labels(source):
    client = signed_in(source, ADMIN)
    before = folder_listing()
    bad = client.post("/database/duplicate", {"label": "../../etc"})
    assert bad.status_code == 400 and "A label is 1 to 40" in bad.content.decode()
    taken = client.post("/database/duplicate", {"label": "plant-a"})
    assert taken.status_code == 409 and "exists already" in taken.content.decode()
    assert folder_listing() == before
    assert [o for o, _, _ in audit(source, "database.copy")] == ["failure", "failure"]


def test_only_admins_of_the_database_may_duplicate_it(source):
    clerk = signed_in(source, CLERK)
    anonymous = Client()
    select(anonymous, source)
    before = folder_listing()
    for client in (clerk, anonymous):
        assert client.get("/database/duplicate").status_code == 403
        assert client.post("/database/duplicate", {"label": "stolen"}).status_code == 403
    assert folder_listing() == before
    assert [o for o, _, _ in audit(source, "database.copy")] == ["denied", "denied"]


def test_progress_is_reported_while_copying(source):
    seen = []
    made = copies.duplicate(
        str(source), "watched", progress_callback=lambda done, total: seen.append((done, total))
    )
    assert seen and seen[-1][0] == seen[-1][1] > 0
    assert made.size > 0 and made.seconds >= 0
    assert time.time() > 0


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []
