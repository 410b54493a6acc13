"""Snapshots of the selected database at /snapshots/: create, list, download, delete, restore."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from django.test import Client

from snapshots.sqlite_copy import sha256_of
from tests.helpers import company_names, messages_of, select, sign_in

ADMIN = ("admin", "admin-pw", True)
CLERK = ("clerk", "clerk-pw", False)
NAME = re.compile(r"^(?P<label>[\w-]+)-\d{8}-\d{6}-[0-9a-f]{8}\.sqlite$")


def _signed_in(path: Path, username: str = "admin", password: str = "admin-pw") -> Client:
    client = Client()
    select(client, path)
    sign_in(client, username, password)
    return client


def _audit(path: Path) -> list[tuple[str, str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT action, outcome, username, target FROM audit_auditentry ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def _snapshot_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if NAME.match(p.name))


def _create(client: Client, note: str = ""):
    return client.post("/snapshots/create", {"note": note}, follow=True)


def _add_company(client: Client, name: str) -> None:
    response = client.post("/companies/new/", {"name": name, "country": "Testland"})
    assert response.status_code == 302


def test_snapshot_lands_in_the_selected_databases_own_folder(make_database):
    alpha = make_database(name="Alpha", companies=["A1"], users=[ADMIN], label="alpha")
    beta = make_database(name="Beta", companies=["B1"], users=[ADMIN], label="beta")
    client = _signed_in(alpha)

    response = _create(client, note="before the audit")

    files = _snapshot_files(alpha.parent / "snapshots")
    assert len(files) == 1 and NAME.match(files[0].name)["label"] == "alpha"
    assert _snapshot_files(beta.parent / "snapshots") == []
    assert f"Snapshot {files[0].name} created." in messages_of(response)
    page = response.content.decode()
    assert "before the audit" in page and ">admin<" in page
    assert str(alpha.parent / "snapshots") in page  # the per-database folder is shown
    assert company_names(files[0]) == {"A1"}
    sidecar = json.loads(Path(f"{files[0]}.json").read_text())
    assert sidecar["created_by"] == "admin" and sidecar["note"] == "before the audit"
    assert sidecar["source_display_name"] == "Alpha"
    assert sidecar["schema_state"] == "up_to_date" and len(sidecar["sha256"]) == 64


def test_snapshot_of_a_database_outside_databases_goes_beside_it(make_database):
    path = make_database(name="Loose", users=[ADMIN])
    client = _signed_in(path)
    _create(client)
    assert len(_snapshot_files(path.parent / "snapshots")) == 1


def test_a_note_never_becomes_part_of_a_path_and_is_shown_escaped(make_database):
    path = make_database(users=[ADMIN], label="alpha")
    client = _signed_in(path)

    response = _create(client, note="../../etc/passwd\n<script>alert(1)</script>")

    files = _snapshot_files(path.parent / "snapshots")
    assert len(files) == 1 and "passwd" not in files[0].name
    assert {p.name for p in path.parent.iterdir()} - {
        "nukeworks.sqlite-wal",
        "nukeworks.sqlite-shm",
    } == {"nukeworks.sqlite", "snapshots"}
    page = response.content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_note_with_a_null_character_is_refused_with_a_message(make_database):
    path = make_database(users=[ADMIN], label="alpha")
    response = _create(_signed_in(path), note="bad\x00note")
    assert any("No snapshot was taken" in m for m in messages_of(response))
    assert _snapshot_files(path.parent / "snapshots") == []


def test_list_is_newest_first(make_database):
    path = make_database(users=[ADMIN], label="alpha")
    client = _signed_in(path)
    for note in ("note-one", "note-two", "note-three"):
        _create(client, note=note)
    page = client.get("/snapshots/").content.decode()
    assert page.index("note-three") < page.index("note-two") < page.index("note-one")


def test_restore_brings_back_old_rows_and_the_safety_snapshot_keeps_newer_ones(make_database):
    path = make_database(companies=["Old Co"], users=[ADMIN], label="alpha")
    client = _signed_in(path)
    _create(client, note="known good")
    [snapshot] = _snapshot_files(path.parent / "snapshots")
    _add_company(client, "New Co")

    confirm = client.get(f"/snapshots/{snapshot.name}/restore")
    assert "Restore" in confirm.content.decode() and "known good" in confirm.content.decode()
    response = client.post(f"/snapshots/{snapshot.name}/restore", follow=True)

    assert any("was restored to snapshot" in m for m in messages_of(response))
    assert company_names(path) == {"Old Co"}
    page = client.get("/companies/").content.decode()
    assert "Old Co" in page and "New Co" not in page
    safety = [f for f in _snapshot_files(path.parent / "snapshots") if f != snapshot]
    assert len(safety) == 1 and company_names(safety[0]) == {"Old Co", "New Co"}
    assert "Before a restore" in client.get("/snapshots/").content.decode()


def test_restore_keeps_another_session_on_the_same_database_working(make_database):
    path = make_database(companies=["Old Co"], users=[ADMIN, CLERK], label="alpha")
    admin = _signed_in(path)
    clerk = _signed_in(path, "clerk", "clerk-pw")
    _create(admin)
    [snapshot] = _snapshot_files(path.parent / "snapshots")
    _add_company(clerk, "Clerk Co")
    assert "Clerk Co" in clerk.get("/companies/").content.decode()

    admin.post(f"/snapshots/{snapshot.name}/restore")

    page = clerk.get("/companies/")
    assert page.status_code == 200
    assert "Old Co" in page.content.decode() and "Clerk Co" not in page.content.decode()
    _add_company(clerk, "After Restore Co")
    assert company_names(path) == {"Old Co", "After Restore Co"}


def test_a_corrupt_snapshot_is_refused_and_the_database_is_untouched(make_database):
    path = make_database(companies=["Live Co"], users=[ADMIN], label="alpha")
    client = _signed_in(path)
    _create(client)
    [snapshot] = _snapshot_files(path.parent / "snapshots")
    data = bytearray(snapshot.read_bytes())
    data[4096 : 4096 * 3] = b"\xff" * (4096 * 2)  # wreck the pages after the header
    snapshot.write_bytes(bytes(data))
    before = path.read_bytes()

    response = client.post(f"/snapshots/{snapshot.name}/restore", follow=True)

    [message] = [m for m in messages_of(response) if "not restored" in m]
    assert "damaged" in message and "The database was not changed." in message
    assert company_names(path) == {"Live Co"}
    assert path.read_bytes() == before
    assert _snapshot_files(path.parent / "snapshots") == [snapshot]  # no safety snapshot
    assert ("snapshot.restore", "failure", "admin") in [a[:3] for a in _audit(path)]


def test_a_snapshot_altered_after_it_was_taken_is_refused(make_database):
    path = make_database(companies=["Live Co"], users=[ADMIN], label="alpha")
    client = _signed_in(path)
    _create(client)
    [snapshot] = _snapshot_files(path.parent / "snapshots")
    conn = sqlite3.connect(snapshot)
    conn.execute("UPDATE companies_company SET name = 'Forged Co'")
    conn.commit()
    conn.close()

    response = client.post(f"/snapshots/{snapshot.name}/restore", follow=True)

    assert any("checksum" in m for m in messages_of(response))
    assert company_names(path) == {"Live Co"}


def test_a_file_that_is_not_a_nukeworks_database_is_refused_for_restore(make_database):
    path = make_database(companies=["Live Co"], users=[ADMIN], label="alpha")
    client = _signed_in(path)
    folder = path.parent / "snapshots"
    folder.mkdir()
    stranger = folder / "alpha-20240101-000000-0123abcd.sqlite"
    conn = sqlite3.connect(stranger)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    # With a matching sidecar it is listed; restore's own checks must refuse it.
    sidecar = {
        "name": stranger.name,
        "size": stranger.stat().st_size,
        "sha256": sha256_of(stranger),
    }
    Path(f"{stranger}.json").write_text(json.dumps(sidecar))

    assert "alpha-20240101-000000-0123abcd.sqlite" in client.get("/snapshots/").content.decode()
    response = client.post(f"/snapshots/{stranger.name}/restore", follow=True)

    assert any("Not a NukeWorks database" in m for m in messages_of(response))
    assert company_names(path) == {"Live Co"}


def test_delete_asks_for_confirmation_then_removes_the_file(make_database):
    path = make_database(users=[ADMIN], label="alpha")
    client = _signed_in(path)
    _create(client, note="to delete")
    [snapshot] = _snapshot_files(path.parent / "snapshots")

    confirm = client.get(f"/snapshots/{snapshot.name}/delete")
    assert confirm.status_code == 200 and "Delete this snapshot?" in confirm.content.decode()
    assert snapshot.exists()
    response = client.post(f"/snapshots/{snapshot.name}/delete", follow=True)

    assert f"Snapshot {snapshot.name} deleted." in messages_of(response)
    assert not snapshot.exists() and not Path(f"{snapshot}.json").exists()
    assert client.post(f"/snapshots/{snapshot.name}/delete").status_code == 404


def test_download_sends_the_snapshot_file(make_database):
    path = make_database(users=[ADMIN], label="alpha")
    client = _signed_in(path)
    _create(client)
    [snapshot] = _snapshot_files(path.parent / "snapshots")

    response = client.get(f"/snapshots/{snapshot.name}/download")

    assert response.status_code == 200
    assert f'filename="{snapshot.name}"' in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == snapshot.read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "..%2Fnukeworks.sqlite",
        "nukeworks.sqlite",
        "beta-20240101-000000-0123abcd.sqlite",
        "alpha-20240101-000000-0123abcd.sqlite.json",
    ],
)
def test_names_that_are_not_this_databases_snapshots_are_not_found(make_database, name):
    alpha = make_database(users=[ADMIN], label="alpha")
    beta = make_database(users=[ADMIN], label="beta")
    _create(_signed_in(beta))
    client = _signed_in(alpha)
    for url in (f"/snapshots/{name}/download", f"/snapshots/{name}/restore"):
        assert client.get(url).status_code == 404


def test_audit_entries_record_create_delete_and_restore(make_database):
    path = make_database(users=[ADMIN], label="alpha")
    client = _signed_in(path)
    _create(client)
    _create(client)
    first, second = _snapshot_files(path.parent / "snapshots")
    client.post(f"/snapshots/{second.name}/delete")
    client.post(f"/snapshots/{first.name}/restore")

    entries = [(a, o, u) for a, o, u, _ in _audit(path) if a.startswith("snapshot.")]
    # The restored file has the entries made after the snapshot was taken carried over.
    assert entries == [
        ("snapshot.create", "success", "admin"),
        ("snapshot.create", "success", "admin"),
        ("snapshot.delete", "success", "admin"),
        ("snapshot.create", "success", "admin"),  # the safety snapshot
        ("snapshot.restore", "success", "admin"),
    ]
    targets = [t for a, _, _, t in _audit(path) if a.startswith("snapshot.")]
    assert targets[0].startswith(str(path.parent / "snapshots"))


ENDPOINTS = [
    ("get", "/snapshots/"),
    ("post", "/snapshots/create"),
    ("get", "/snapshots/{name}/download"),
    ("get", "/snapshots/{name}/restore"),
    ("post", "/snapshots/{name}/restore"),
    ("get", "/snapshots/{name}/delete"),
    ("post", "/snapshots/{name}/delete"),
    ("post", "/snapshots/retention"),
    ("get", "/snapshots/prune"),
    ("post", "/snapshots/prune"),
]


@pytest.mark.parametrize("who", ["clerk", "anonymous"])
def test_non_admins_get_403_and_nothing_changes(make_database, who):
    path = make_database(companies=["Live Co"], users=[ADMIN, CLERK], label="alpha")
    _create(_signed_in(path))
    [snapshot] = _snapshot_files(path.parent / "snapshots")
    if who == "clerk":
        client = _signed_in(path, "clerk", "clerk-pw")
    else:
        client = Client()
        select(client, path)

    for method, url in ENDPOINTS:
        response = getattr(client, method)(url.format(name=snapshot.name))
        assert response.status_code == 403, (method, url)
        assert "Only administrators" in response.content.decode()

    assert _snapshot_files(path.parent / "snapshots") == [snapshot]
    assert company_names(path) == {"Live Co"}


def test_only_admins_see_the_snapshots_link(make_database):
    path = make_database(users=[ADMIN, CLERK], label="alpha")
    clerk_page = _signed_in(path, "clerk", "clerk-pw").get("/companies/").content.decode()
    admin_page = _signed_in(path).get("/companies/").content.decode()
    assert 'href="/snapshots/"' not in clerk_page
    assert 'href="/snapshots/"' in admin_page


def test_state_changes_need_a_post(make_database):
    path = make_database(users=[ADMIN], label="alpha")
    client = _signed_in(path)
    assert client.get("/snapshots/create").status_code == 405
    assert _snapshot_files(path.parent / "snapshots") == []


def test_a_sibling_databases_snapshots_are_not_listed_or_restorable(make_database, tmp_path):
    """`site.sqlite` and `site.db` in one folder share `snapshots/` and the label "site"."""
    folder = tmp_path / "shared"
    folder.mkdir()
    mine = make_database(
        name="Mine", companies=["Mine Co"], users=[ADMIN], path=folder / "site.sqlite"
    )
    other = make_database(
        name="Other", companies=["Other Co"], users=[ADMIN], path=folder / "site.db"
    )
    _create(_signed_in(other), note="other's snapshot")
    [foreign] = _snapshot_files(folder / "snapshots")

    client = _signed_in(mine)
    assert "other&#x27;s snapshot" not in client.get("/snapshots/").content.decode()
    assert client.get(f"/snapshots/{foreign.name}/restore").status_code == 404
    response = client.post(f"/snapshots/{foreign.name}/restore", follow=True)

    assert company_names(mine) == {"Mine Co"}
    assert not any("was restored to snapshot" in m for m in messages_of(response))


def test_selecting_a_snapshot_file_is_refused_and_leaves_it_restorable(make_database):
    """Opening a snapshot as a database wrote into it (WAL, audit rows): its SHA-256 broke."""
    path = make_database(companies=["Old Co"], users=[ADMIN], label="alpha")
    admin = _signed_in(path)
    _create(admin, note="keep me")
    [snapshot] = _snapshot_files(path.parent / "snapshots")
    recorded = json.loads(Path(f"{snapshot}.json").read_text())["sha256"]

    visitor = Client()
    response = select(visitor, snapshot)

    assert response.status_code == 400
    assert any("snapshot" in m for m in messages_of(response))
    assert "selected_db_path" not in visitor.session
    assert sha256_of(snapshot) == recorded
    restored = admin.post(f"/snapshots/{snapshot.name}/restore", follow=True)
    assert any("was restored to snapshot" in m for m in messages_of(restored))
