"""manage.py snapshot, and retention (max_snapshots, retention_days) from the page and the CLI."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from snapshots import naming, service
from tests.helpers import company_names, messages_of, select, sign_in

ADMIN = ("admin", "admin-pw", True)


def _run(*args: str) -> str:
    out = StringIO()
    call_command("snapshot", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def _age(snapshot: service.Snapshot, days: int) -> None:
    """Pretend a snapshot was taken `days` ago."""
    sidecar = Path(f"{snapshot.path}.json")
    data = json.loads(sidecar.read_text())
    data["created_at"] = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    sidecar.write_text(json.dumps(data))


def test_create_list_restore_delete_by_label(make_database):
    path = make_database(companies=["Old Co"], label="alpha")
    out = _run("create", "--database", "alpha", "--note", "nightly by hand", "--no-progress")
    assert "Created" in out and str(path.parent / "snapshots") in out
    [snapshot] = service.list_snapshots(str(path))
    assert snapshot.note == "nightly by hand" and snapshot.created_by.endswith("(manage.py)")

    listing = _run("list", "--database", "alpha")
    assert snapshot.name in listing and "nightly by hand" in listing

    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM companies_company")
    conn.commit()
    conn.close()
    out = _run("restore", snapshot.name, "--database", "alpha", "--noinput", "--no-progress")
    assert "Restored" in out and "Safety snapshot" in out
    assert company_names(path) == {"Old Co"}
    assert len(service.list_snapshots(str(path))) == 2

    _run("delete", snapshot.name, "--database", "alpha", "--noinput")
    assert [s.kind for s in service.list_snapshots(str(path))] == ["safety"]


def test_create_by_path_shows_progress(make_database):
    path = make_database(label=None)
    err = StringIO()
    call_command("snapshot", "create", "--path", str(path), stdout=StringIO(), stderr=err)
    assert len(service.list_snapshots(str(path))) == 1


def test_unknown_label_and_unknown_snapshot_are_clear_errors(make_database):
    make_database(label="alpha")
    with pytest.raises(CommandError, match=r"No database labelled 'nope'.*alpha"):
        _run("list", "--database", "nope")
    with pytest.raises(CommandError, match="There is no snapshot alpha-2024"):
        _run("restore", "alpha-20240101-000000-0123abcd.sqlite", "--database", "alpha", "--noinput")
    with pytest.raises(CommandError, match="There is no such snapshot"):
        _run("delete", "../nukeworks.sqlite", "--database", "alpha", "--noinput")


def test_restore_asks_before_it_overwrites(make_database, monkeypatch):
    path = make_database(companies=["Old Co"], label="alpha")
    snapshot = service.create_snapshot(str(path))
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="Cancelled"):
        _run("restore", snapshot.name, "--database", "alpha")
    assert len(service.list_snapshots(str(path))) == 1  # not even a safety snapshot


def test_prune_applies_max_snapshots_and_retention_days_from_the_database(make_database):
    path = make_database(label="alpha")
    snapshots = [service.create_snapshot(str(path), note=f"n{i}") for i in range(4)]
    _age(snapshots[0], days=40)
    alias = service._alias(str(path))
    from snapshots import retention

    retention.save(alias, retention.Policy(max_snapshots=3, retention_days=30))
    dry = _run("prune", "--database", "alpha", "--dry-run")
    assert "1 snapshot(s) would be deleted" in dry and snapshots[0].name in dry
    assert len(service.list_snapshots(str(path))) == 4

    out = _run("prune", "--database", "alpha", "--noinput")
    assert "1 snapshot(s) deleted" in out
    assert {s.name for s in service.list_snapshots(str(path))} == {s.name for s in snapshots[1:]}

    retention.save(alias, retention.Policy(max_snapshots=1))
    _run("prune", "--database", "alpha", "--noinput")
    assert [s.name for s in service.list_snapshots(str(path))] == [snapshots[3].name]


def test_retention_from_the_page_is_saved_in_the_database_and_applied_on_demand(make_database):
    path = make_database(users=[ADMIN], label="alpha")
    client = Client()
    select(client, path)
    sign_in(client, "admin", "admin-pw")
    for i in range(3):
        client.post("/snapshots/create", {"note": f"n{i}"})

    response = client.post(
        "/snapshots/retention", {"max_snapshots": "1", "retention_days": ""}, follow=True
    )
    assert "Retention saved: keep the newest 1." in messages_of(response)
    assert "2 snapshots would be deleted now." in response.content.decode()
    assert len(service.list_snapshots(str(path))) == 3  # saving never deletes

    confirm = client.get("/snapshots/prune").content.decode()
    assert confirm.count("<li>") == 2
    response = client.post("/snapshots/prune", follow=True)
    assert "Retention applied: 2 snapshots deleted." in messages_of(response)
    [kept] = service.list_snapshots(str(path))
    assert kept.note == "n2"

    conn = sqlite3.connect(path)
    stored = dict(conn.execute("SELECT key, value FROM system_settings").fetchall())
    conn.close()
    assert stored["max_snapshots"] == "1" and stored["retention_days"] == ""

    bad = client.post("/snapshots/retention", {"max_snapshots": "-3"}, follow=True)
    assert any("were not saved" in m for m in messages_of(bad))


def test_labels_make_safe_file_names():
    assert naming.label_for("/srv/databases/alpha/nukeworks.sqlite") == "alpha"
    assert naming.label_for("/data/Site Data (2024).sqlite") == "Site-Data-2024"
    assert naming.label_for("/data/…/¿?.sqlite") == "database"
    name = naming.new_name("alpha", datetime(2024, 3, 1, 12, 30, 5, tzinfo=UTC))
    assert name.startswith("alpha-20240301-123005-") and naming.is_snapshot_name(name, "alpha")
    assert not naming.is_snapshot_name(name, "alph")
