"""Attachments through the API: upload (multipart), list, content, delete, and their errors."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from tests.helpers import assert_error

PASSWORD = "pw-api-123"
BASE = "/api/v1/databases/alpha"


@pytest.fixture
def alpha(make_database):
    return make_database(
        name="Alpha", label="alpha", companies=["Acme"], users=[("ann", PASSWORD, False)]
    )


@pytest.fixture
def headers(alpha) -> dict[str, str]:
    response = Client().post(
        f"{BASE}/auth/token",
        {"username": "ann", "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return {"Authorization": f"Token {response.json()['token']}"}


@pytest.fixture
def acme(alpha) -> int:
    conn = sqlite3.connect(alpha)
    try:
        return conn.execute("SELECT id FROM companies_company").fetchone()[0]
    finally:
        conn.close()


def _upload(headers, name: str, content: bytes, **owner):
    return Client().post(
        f"{BASE}/attachments/",
        {"file": SimpleUploadedFile(name, content), **owner},
        headers=headers,
    )


def test_upload_list_download_delete_round_trip(alpha, headers, acme):
    content = os.urandom(200_000)
    created = _upload(headers, "scan.bin", content, company=acme)

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["name"] == "scan.bin" and body["size"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["company"] == acme and body["project"] is None and body["uploaded_by"] == "ann"

    listed = Client().get(f"{BASE}/attachments/?company={acme}", headers=headers).json()
    assert [a["id"] for a in listed["results"]] == [body["id"]]

    download = Client().get(f"{BASE}/attachments/{body['id']}/content/", headers=headers)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == content
    assert download["Content-Disposition"].startswith("attachment;")

    deleted = Client().delete(f"{BASE}/attachments/{body['id']}/", headers=headers)
    assert deleted.status_code == 204
    assert_error(
        Client().get(f"{BASE}/attachments/{body['id']}/", headers=headers), 404, "not_found"
    )


def test_same_content_twice_is_one_file(alpha, headers, acme):
    for name in ("one.txt", "two.txt"):
        assert _upload(headers, name, b"same bytes", company=acme).status_code == 201
    files = [p for p in (alpha.parent / "payloads").rglob("*") if p.is_file() and len(p.name) == 64]
    assert len(files) == 1


def test_owner_must_be_exactly_one(alpha, headers, acme):
    assert_error(_upload(headers, "x.txt", b"x"), 400, "invalid")
    assert_error(_upload(headers, "x.txt", b"x", company=acme, project=1), 400, "invalid")
    assert_error(_upload(headers, "x.txt", b"x", company=99999), 400, "invalid")


def test_empty_file_is_refused(alpha, headers, acme):
    assert_error(_upload(headers, "empty.txt", b"", company=acme), 400, "empty_file")


@override_settings(NUKEWORKS_ATTACHMENTS={"MAX_BYTES": 10})
def test_file_over_the_limit_is_413(alpha, headers, acme):
    error = assert_error(
        _upload(headers, "big.txt", b"x" * 11, company=acme), 413, "payload_too_large"
    )
    assert error["detail"] == {"limit": 10}
    assert not list((alpha.parent / "payloads").rglob("*.txt"))


def test_missing_file_is_404_file_missing(alpha, headers, acme):
    body = _upload(headers, "gone.txt", b"gone soon", company=acme).json()
    sha = body["sha256"]
    (alpha.parent / "payloads" / sha[:2] / sha).unlink()
    assert_error(
        Client().get(f"{BASE}/attachments/{body['id']}/content/", headers=headers),
        404,
        "file_missing",
    )


def test_svg_is_served_as_octet_stream(alpha, headers, acme):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    body = _upload(headers, "logo.svg", svg, company=acme).json()
    assert body["content_type"] == "image/svg+xml"
    download = Client().get(f"{BASE}/attachments/{body['id']}/content/", headers=headers)
    assert download["Content-Type"] == "application/octet-stream"
    assert download["X-Content-Type-Options"] == "nosniff"


def test_without_a_token_nothing_is_shown(alpha, acme):
    assert Client().get(f"{BASE}/attachments/").status_code == 401
