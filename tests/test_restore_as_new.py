"""Restoring a snapshot as a new database ("Restore as new database…", copydb --from-snapshot).

The new database holds the snapshot's rows and its attachments' files; the live database is
left exactly as it is; a damaged or altered snapshot is refused with nothing created; admins
only.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from dbselect import engines
from snapshots import service
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
from tests.helpers import dump_without_audit, messages_of, select

KEPT = b"the attachment of the snapshot's moment " * 200


@pytest.fixture
def live(make_database) -> Path:
    path = make_database(
        name="Live", companies=["Acme", "Globex"], users=[ADMIN, CLERK], label="live"
    )
    attach(path, KEPT, "kept.pdf")
    return path


@pytest.fixture
def snapshot(live) -> service.Snapshot:
    taken = service.create_snapshot(str(live), note="before the clean-up")
    # Then the live database moves on: a company and the attachment are deleted.
    conn = sqlite3.connect(live)
    try:
        conn.execute("DELETE FROM attachments_attachment")
        conn.execute("DELETE FROM companies_company WHERE name = 'Globex'")
        conn.commit()
    finally:
        conn.close()
    engines.dispose(str(live))
    return taken


def test_the_snapshot_list_offers_restore_as_new(live, snapshot):
    client = signed_in(live, ADMIN)
    html = client.get("/snapshots/").content.decode()
    assert f'href="/database/snapshots/{snapshot.name}/restore-as-new"' in html
    page = client.get(f"/database/snapshots/{snapshot.name}/restore-as-new")
    assert page.status_code == 200
    assert snapshot.name in page.content.decode()


def test_restore_as_new_brings_the_snapshots_rows_and_files_and_leaves_live_alone(live, snapshot):
    client = signed_in(live, ADMIN)
    live_before = dump_without_audit(live)
    response = client.post(
        f"/database/snapshots/{snapshot.name}/restore-as-new",
        {"label": "before-cleanup", "display_name": "Before the clean-up"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/snapshots/"
    assert any("Created the database “Before the clean-up”" in m for m in messages_of(response))
    new = databases_dir() / "before-cleanup" / "nukeworks.sqlite"
    assert quick_check(new) == "ok"
    assert display_name(new) == "Before the clean-up"
    assert rows(new, "SELECT name FROM companies_company ORDER BY name") == [
        ("Acme",),
        ("Globex",),
    ]
    assert rows(new, "SELECT name FROM attachments_attachment") == [("kept.pdf",)]
    assert payload_file(new, KEPT).read_bytes() == KEPT
    # The live database did not change (its audit trail records the action, nothing else).
    assert dump_without_audit(live) == live_before
    assert display_name(live) == "Live"
    [(outcome, username, detail)] = audit(live, "database.restore_as_new")
    assert (outcome, username) == ("success", "boss") and snapshot.name in detail
    [(outcome, _, detail)] = audit(new, "database.restore_as_new")
    assert outcome == "success" and snapshot.name in detail
    # The session still works on the live database; the new one is listed and opens.
    assert client.session["selected_db_path"] == str(live)
    visitor = Client()
    assert select(visitor, new).status_code == 302


def test_the_attachment_of_the_snapshot_is_downloadable_in_the_new_database(live, snapshot):
    from payloads.store import PayloadStore

    out = io.StringIO()
    call_command(
        "copydb",
        "live",
        "restored",
        "--from-snapshot",
        snapshot.name,
        "--no-progress",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert "restored as new" in out.getvalue()
    new = databases_dir() / "restored" / "nukeworks.sqlite"
    client = signed_in(new, ADMIN)
    [(pk,)] = rows(new, "SELECT id FROM attachments_attachment")
    response = client.get(f"/attachments/{pk}/download")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == KEPT
    assert PayloadStore.for_database(new).has(snapshot.payloads[0])


def test_an_altered_snapshot_is_refused_and_nothing_is_created(live, snapshot):
    sidecar = snapshot.path.with_name(snapshot.path.name + ".json")
    data = json.loads(sidecar.read_text())
    data["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(data))
    client = signed_in(live, ADMIN)
    before = folder_listing()
    response = client.post(
        f"/database/snapshots/{snapshot.name}/restore-as-new", {"label": "tampered"}
    )
    assert response.status_code == 400
    assert "no longer matches the checksum" in response.content.decode()
    assert "No database was created" in response.content.decode()
    assert folder_listing() == before
    [(outcome, _, _)] = audit(live, "database.restore_as_new")
    assert outcome == "failure"


def test_bad_and_taken_labels_and_unknown_snapshots_are_refused(live, snapshot):
    client = signed_in(live, ADMIN)
    before = folder_listing()
    url = f"/database/snapshots/{snapshot.name}/restore-as-new"
    assert client.post(url, {"label": "../x"}).status_code == 400
    assert client.post(url, {"label": "live"}).status_code == 409
    assert client.get("/database/snapshots/nope.sqlite/restore-as-new").status_code == 404
    with pytest.raises(CommandError, match=r"no snapshot|no such snapshot"):
        call_command(
            "copydb",
            "live",
            "other",
            "--from-snapshot",
            "live-20200101-000000-abcdef12.sqlite",
            stderr=io.StringIO(),
        )
    assert folder_listing() == before


def test_only_admins_may_restore_as_new(live, snapshot):
    clerk = signed_in(live, CLERK)
    anonymous = Client()
    select(anonymous, live)
    url = f"/database/snapshots/{snapshot.name}/restore-as-new"
    before = folder_listing()
    for client in (clerk, anonymous):
        assert client.get(url).status_code == 403
        assert client.post(url, {"label": "stolen"}).status_code == 403
    assert folder_listing() == before
    assert [o for o, _, _ in audit(live, "database.restore_as_new")] == ["denied", "denied"]
