"""Attachments and everything that keeps a database's past: snapshots, restore, the collector
(`manage.py payloads gc`) and the integrity check (`manage.py dbcheck`)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from tests.helpers import messages_of, select, sign_in

ADMIN = ("boss", "boss-pw", True)


@pytest.fixture
def db(make_database) -> Path:
    return make_database(name="Docs", companies=["Acme"], users=[ADMIN], label="docs")


@pytest.fixture
def admin(db) -> Client:
    client = Client()
    select(client, db)
    sign_in(client, "boss", "boss-pw")
    return client


def _company(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id FROM companies_company").fetchone()[0]
    finally:
        conn.close()


def _attach(client: Client, db: Path, name: str, content: bytes) -> int:
    response = client.post(
        f"/companies/{_company(db)}/attachments/",
        {"file": SimpleUploadedFile(name, content)},
        follow=True,
    )
    assert f"“{name}” attached." in messages_of(response)
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT max(id) FROM attachments_attachment").fetchone()[0]
    finally:
        conn.close()


def _names(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM attachments_attachment ORDER BY id")]
    finally:
        conn.close()


def _download(client: Client, pk: int) -> bytes:
    response = client.get(f"/attachments/{pk}/download")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def _store(db: Path, content: bytes) -> Path:
    sha = hashlib.sha256(content).hexdigest()
    return db.parent / "payloads" / sha[:2] / sha


def _snapshot(client: Client) -> Path:
    response = client.post("/snapshots/create", {"note": "with attachments"}, follow=True)
    assert response.status_code == 200
    [snapshot] = response.context["snapshots"][:1]
    return snapshot.path


def test_a_snapshot_records_its_attachments_without_copying_them(db, admin):
    _attach(admin, db, "a.pdf", b"%PDF-1.4 first")
    _attach(admin, db, "b.txt", b"second")
    path = _snapshot(admin)

    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["payloads"] == sorted(
        hashlib.sha256(c).hexdigest() for c in (b"%PDF-1.4 first", b"second")
    )
    stored = list((db.parent / "payloads").rglob("*"))
    assert len([p for p in stored if p.is_file() and len(p.name) == 64]) == 2
    assert not list(path.parent.rglob("*.pdf"))


def test_restoring_a_snapshot_brings_a_deleted_attachment_back(db, admin):
    content = b"the signed contract " * 500
    pk = _attach(admin, db, "contract.txt", content)
    snapshot = _snapshot(admin)
    admin.post(f"/attachments/{pk}/delete")
    assert _names(db) == []

    response = admin.post(f"/snapshots/{snapshot.name}/restore", follow=True)

    assert response.status_code == 200
    assert _names(db) == ["contract.txt"]
    assert _download(admin, pk) == content


def test_gc_keeps_what_snapshots_reference_and_removes_the_rest(db, admin):
    kept = b"referenced by the snapshot"
    dropped = b"referenced by nobody after the delete"
    first = _attach(admin, db, "kept.txt", kept)
    _snapshot(admin)
    second = _attach(admin, db, "dropped.txt", dropped)
    admin.post(f"/attachments/{first}/delete")
    admin.post(f"/attachments/{second}/delete")

    dry = StringIO()
    call_command("payloads", "gc", "docs", "--dry-run", stdout=dry)
    assert "Would remove 1 unreferenced file(s)" in dry.getvalue()
    assert _store(db, dropped).exists()

    out = StringIO()
    call_command("payloads", "gc", "docs", stdout=out)

    assert "Removed 1 unreferenced file(s)" in out.getvalue()
    assert hashlib.sha256(dropped).hexdigest() in out.getvalue()
    assert _store(db, kept).exists()
    assert not _store(db, dropped).exists()


def test_gc_keeps_a_file_a_live_row_still_references(db, admin):
    content = b"in use"
    _attach(admin, db, "one.txt", content)
    _attach(admin, db, "two.txt", content)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM attachments_attachment WHERE name = 'one.txt'")
    conn.close()
    call_command("payloads", "gc", "docs", stdout=StringIO())
    assert _store(db, content).exists()


def test_dbcheck_reports_missing_corrupt_and_extra_files(db, admin):
    _attach(admin, db, "fine.txt", b"fine")
    _attach(admin, db, "missing.txt", b"will be missing")
    _attach(admin, db, "corrupt.txt", b"will be corrupt")
    extra = admin  # an unreferenced file: attached, then its row deleted
    gone = _attach(extra, db, "extra.txt", b"unreferenced")
    admin.post(f"/attachments/{gone}/delete")
    _store(db, b"will be missing").unlink()
    corrupt = _store(db, b"will be corrupt")
    corrupt.chmod(0o644)
    corrupt.write_bytes(b"flipped bits")

    out = StringIO()
    with pytest.raises(SystemExit) as exit_status:
        call_command("dbcheck", "docs", "--no-progress", stdout=out)

    text = out.getvalue()
    assert exit_status.value.code == 1
    assert "Database file" in text and ": ok" in text
    assert "missing: 1" in text and hashlib.sha256(b"will be missing").hexdigest() in text
    assert "corrupt (content does not match its SHA-256): 1" in text
    assert "extra (referenced by nothing" in text and "): 1" in text
    assert "Problems found." in text


def test_dbcheck_passes_on_a_healthy_database(db, admin):
    _attach(admin, db, "fine.txt", b"fine")
    out = StringIO()
    call_command("dbcheck", "docs", "--no-progress", stdout=out)
    assert "No problems found." in out.getvalue()


def test_commands_refuse_an_unknown_label(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No database labelled 'nope'"):
        call_command("payloads", "gc", "nope")
    with pytest.raises(CommandError, match="No database labelled 'nope'"):
        call_command("dbcheck", "nope")


def test_a_failed_migration_restores_the_attachments_with_the_file(make_database, settings):
    """The pre-migration snapshot records the attachments; its restore brings them back."""
    home = make_database(name="Home Base", users=[ADMIN], label="default")
    target = make_database(name="Fragile", companies=["Keep Me"], users=[ADMIN])
    owner = Client()
    select(owner, target)
    sign_in(owner, "boss", "boss-pw")
    content = b"drawing of the reactor building " * 100
    pk = _attach(owner, target, "building.txt", content)
    operator = Client()
    select(operator, home)
    sign_in(operator, "boss", "boss-pw")
    settings.MIGRATION_MODULES = {"companies": "tests.failing_migrations"}

    response = operator.post("/select-db/migrate", {"path": str(target)})

    assert response.status_code == 422
    assert _names(target) == ["building.txt"]
    [pre_migration] = [
        json.loads(p.read_text()) for p in (target.parent / "snapshots").glob("*.sqlite.json")
    ]
    assert pre_migration["kind"] == "pre-migration"
    assert pre_migration["payloads"] == [hashlib.sha256(content).hexdigest()]
    settings.MIGRATION_MODULES = {}
    assert _download(owner, pk) == content
