"""The browse widget's endpoint: folders and database files only, read-only."""

from __future__ import annotations

from django.test import Client


def test_lists_folders_and_database_files(tmp_path):
    tmp_path = tmp_path / "share"
    tmp_path.mkdir()
    (tmp_path / "site-a").mkdir()
    (tmp_path / "plant.sqlite").write_bytes(b"")
    (tmp_path / "legacy.db").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    data = Client().get("/select-db/browse", {"dir": str(tmp_path)}).json()
    assert data["dir"] == str(tmp_path)
    assert data["parent"] == str(tmp_path.parent)
    assert [(e["name"], e["type"]) for e in data["entries"]] == [
        ("site-a", "folder"),
        ("legacy.db", "database"),
        ("plant.sqlite", "database"),
    ]


def test_defaults_to_the_databases_folder(make_database):
    make_database(label="north")
    data = Client().get("/select-db/browse").json()
    assert [e["name"] for e in data["entries"]] == ["north"]


def test_bad_folder_is_a_clear_400(tmp_path):
    client = Client()
    missing = client.get("/select-db/browse", {"dir": str(tmp_path / "nope")})
    assert missing.status_code == 400
    assert missing.json() == {"error": "This folder does not exist."}
    assert not (tmp_path / "nope").exists()
    relative = client.get("/select-db/browse", {"dir": "some/where"})
    assert relative.status_code == 400
    assert "absolute path" in relative.json()["error"]


def test_selector_page_has_the_browse_widget(client):
    page = client.get("/select-db").content.decode()
    assert 'id="browse-toggle"' in page
    assert 'data-url="/select-db/browse"' in page
    assert "Refresh list" in page and "Continue" in page
