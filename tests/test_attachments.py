"""Attachments on companies and projects, through the pages: upload, list, download, delete.

The bytes land content-addressed beside the database (databases/<label>/payloads/<aa>/<sha>),
the row names them; hostile uploads are refused or served as inert downloads only.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from tests.helpers import messages_of, select, sign_in

USER = ("clerk", "clerk-pw", False)
ADMIN = ("boss", "boss-pw", True)


@pytest.fixture
def db(make_database) -> Path:
    return make_database(name="Docs", companies=["Acme"], users=[USER, ADMIN], label="docs")


@pytest.fixture
def client(db) -> Client:
    client = Client()
    select(client, db)
    sign_in(client, "clerk", "clerk-pw")
    return client


def _company_id(db: Path, name: str = "Acme") -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id FROM companies_company WHERE name = ?", (name,)).fetchone()[
            0
        ]
    finally:
        conn.close()


def _rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT id, name, sha256, size, content_type, uploaded_by_name, company_id, project_id"
            " FROM attachments_attachment ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def _upload(client: Client, company: int, name: str, content: bytes, **extra):
    return client.post(
        f"/companies/{company}/attachments/",
        {"file": SimpleUploadedFile(name, content, **extra)},
        follow=True,
    )


def _download(client: Client, attachment: int):
    response = client.get(f"/attachments/{attachment}/download")
    body = b"".join(response.streaming_content) if response.status_code == 200 else b""
    return response, body


def _payload_files(db: Path) -> list[Path]:
    return sorted(
        p for p in (db.parent / "payloads").rglob("*") if p.is_file() and len(p.name) == 64
    )


def test_upload_then_download_gives_the_same_bytes(db, client):
    content = os.urandom(300_000) + b"%PDF-1.7 not really at the start"
    response = _upload(client, _company_id(db), "report 2026.bin", content)

    assert response.status_code == 200
    assert "“report 2026.bin” attached." in messages_of(response)
    [(pk, name, sha, size, ctype, who, company, project)] = _rows(db)
    assert (name, size, who, company, project) == (
        "report 2026.bin",
        len(content),
        "clerk",
        _company_id(db),
        None,
    )
    assert sha == hashlib.sha256(content).hexdigest()
    assert ctype == "application/octet-stream"  # sniffed: random bytes, whatever the name says
    stored = db.parent / "payloads" / sha[:2] / sha
    assert stored.read_bytes() == content
    assert oct(stored.stat().st_mode & 0o777) == "0o444"
    page = client.get(f"/companies/{_company_id(db)}/").content.decode()
    assert "report 2026.bin" in page and f"/attachments/{pk}/download" in page

    download, body = _download(client, pk)
    assert download.status_code == 200
    assert body == content
    assert download["Content-Disposition"].startswith("attachment;")
    assert "report 2026.bin" in download["Content-Disposition"]
    assert download["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in download["Content-Security-Policy"]


def test_attachments_on_projects_too(db, client):
    client.post(
        "/projects/new/", {"name": "Unit 1", "company": _company_id(db), "status": "planned"}
    )
    conn = sqlite3.connect(db)
    [(project,)] = conn.execute("SELECT id FROM companies_project").fetchall()
    conn.close()
    response = client.post(
        f"/projects/{project}/attachments/",
        {"file": SimpleUploadedFile("drawing.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100)},
        follow=True,
    )
    assert "“drawing.png” attached." in messages_of(response)
    [row] = _rows(db)
    assert row[4] == "image/png" and row[6] is None and row[7] == project
    assert "drawing.png" in client.get(f"/projects/{project}/").content.decode()


def test_equal_content_is_stored_once(db, client):
    content = b"the same contract, twice\n" * 1000
    _upload(client, _company_id(db), "a.txt", content)
    _upload(client, _company_id(db), "b.txt", content)

    rows = _rows(db)
    assert [r[1] for r in rows] == ["a.txt", "b.txt"]
    assert rows[0][2] == rows[1][2]
    assert len(_payload_files(db)) == 1


def test_deleting_an_attachment_removes_its_row_and_keeps_the_file_for_gc(db, client):
    _upload(client, _company_id(db), "old.txt", b"old text")
    [(pk, *_)] = _rows(db)

    response = client.post(f"/attachments/{pk}/delete", follow=True)

    assert "“old.txt” deleted." in messages_of(response)
    assert _rows(db) == []
    assert len(_payload_files(db)) == 1  # the collector decides (payloads gc)
    assert client.get(f"/attachments/{pk}/download").status_code == 404


def test_delete_needs_a_post(db, client):
    _upload(client, _company_id(db), "keep.txt", b"keep me")
    [(pk, *_)] = _rows(db)
    assert client.get(f"/attachments/{pk}/delete").status_code == 405
    assert len(_rows(db)) == 1


def test_a_missing_file_is_shown_as_missing_and_answers_404(db, client):
    _upload(client, _company_id(db), "gone.txt", b"soon gone")
    [(pk, _, sha, *_)] = _rows(db)
    stored = db.parent / "payloads" / sha[:2] / sha
    stored.unlink()

    page = client.get(f"/companies/{_company_id(db)}/")
    assert page.status_code == 200
    assert "file missing" in page.content.decode()
    response, _ = _download(client, pk)
    assert response.status_code == 404


def test_anonymous_visitors_cannot_upload_or_download(db, client):
    _upload(client, _company_id(db), "secret.txt", b"secret")
    [(pk, *_)] = _rows(db)
    anonymous = Client()
    select(anonymous, db)
    assert anonymous.get(f"/attachments/{pk}/download").status_code == 302
    response = anonymous.post(
        f"/companies/{_company_id(db)}/attachments/",
        {"file": SimpleUploadedFile("x.txt", b"x")},
    )
    assert response.status_code == 302 and "/login" in response["Location"]
    assert len(_rows(db)) == 1


def test_upload_needs_csrf(db, client):
    client.handler.enforce_csrf_checks = True
    response = client.post(
        f"/companies/{_company_id(db)}/attachments/",
        {"file": SimpleUploadedFile("x.txt", b"x")},
    )
    assert response.status_code == 403
    assert _rows(db) == []


@pytest.mark.parametrize(
    "sent, kept",
    [
        ("../../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\evil.dll", "evil.dll"),
        ("/abs/path/report.pdf", "report.pdf"),
        ("....", "attachment"),
        ("a\x00b\x1f<script>.txt", "ab_script_.txt"),
        ("x" * 400 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_hostile_names_are_sanitised_and_nothing_escapes_the_store(db, client, sent, kept):
    _upload(client, _company_id(db), sent, b"payload bytes")
    [row] = _rows(db)
    assert row[1] == kept
    assert [p.parent.parent for p in _payload_files(db)] == [db.parent / "payloads"]
    assert not (db.parent.parent / "etc").exists()


def test_an_empty_file_is_refused_with_nothing_stored(db, client):
    response = _upload(client, _company_id(db), "empty.txt", b"")
    assert any("empty" in m for m in messages_of(response))
    assert _rows(db) == []
    assert _payload_files(db) == []


@override_settings(NUKEWORKS_ATTACHMENTS={"MAX_BYTES": 1000})
def test_a_file_over_the_limit_is_refused_with_nothing_stored(db, client):
    response = _upload(client, _company_id(db), "big.bin", b"x" * 1001)
    assert any("larger than the limit of 1,000 bytes" in m for m in messages_of(response))
    assert _rows(db) == []
    assert _payload_files(db) == []
    assert not list((db.parent / "payloads").glob(".incoming-*"))


@pytest.mark.parametrize(
    "name, content, sniffed",
    [
        ("page.html", b"<!DOCTYPE html><html><script>alert(1)</script></html>", "text/html"),
        (
            "image.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "image/svg+xml",
        ),
        ("fake.png", b"<html><body onload=alert(1)>", "text/html"),
    ],
)
def test_active_content_is_served_as_a_download_only(db, client, name, content, sniffed):
    _upload(client, _company_id(db), name, content, content_type="image/png")
    [(pk, _, _, _, ctype, *_)] = _rows(db)
    assert ctype == sniffed  # sniffed from the bytes, not the client's claim

    response, body = _download(client, pk)

    assert body == content
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]


def test_names_are_escaped_on_the_page(db, client):
    _upload(client, _company_id(db), "<img src=x onerror=alert(1)>.txt", b"text")
    page = client.get(f"/companies/{_company_id(db)}/").content.decode()
    assert "<img src=x" not in page


def test_upload_is_audited(db, client):
    _upload(client, _company_id(db), "audited.txt", b"audit me")
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT action, username, target FROM audit_auditentry WHERE action LIKE 'attachment.%'"
    ).fetchall()
    conn.close()
    assert rows == [("attachment.upload", "clerk", f"company:{_company_id(db)}")]


def test_the_django_admin_lists_adds_and_deletes(db):
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE accounts_user SET is_superuser = 1 WHERE username = 'boss'")
    conn.close()
    admin = Client()
    select(admin, db)
    sign_in(admin, "boss", "boss-pw")
    response = admin.post(
        "/admin/attachments/attachment/add/",
        {
            "company": _company_id(db),
            "project": "",
            "upload": SimpleUploadedFile("adm.txt", b"adm"),
        },
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    [(pk, name, sha, *_)] = _rows(db)
    assert name == "adm.txt" and sha == hashlib.sha256(b"adm").hexdigest()
    listing = admin.get("/admin/attachments/attachment/").content.decode()
    assert "adm.txt" in listing
    response = admin.post(f"/admin/attachments/attachment/{pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert _rows(db) == []


def test_a_file_outside_databases_keeps_its_payloads_beside_it(make_database):
    loose = make_database(name="Loose", companies=["Acme"], users=[USER])
    client = Client()
    select(client, loose)
    sign_in(client, "clerk", "clerk-pw")
    _upload(client, _company_id(loose), "note.txt", b"beside the file")
    sha = hashlib.sha256(b"beside the file").hexdigest()
    assert (loose.parent / "nukeworks.payloads" / sha[:2] / sha).read_bytes() == b"beside the file"
    assert not (loose.parent / "payloads").exists()
