"""The Export / Import page at /bundles/: admins only, CSRF, download, upload, limits, audit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from bundles import package
from dbselect import engines
from tests.bundle_factory import company, domain_snapshot, make_bundle, project, rows_of
from tests.helpers import dump_without_audit, messages_of, select, sign_in

ADMIN = ("admin", "admin-pw", True)
CLERK = ("clerk", "clerk-pw", False)


def _signed_in(path: Path, username: str = "admin", password: str = "admin-pw", **kw) -> Client:
    client = Client(**kw)
    select(client, path)
    sign_in(client, username, password)
    return client


def _audit(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT action, outcome, username FROM audit_auditentry WHERE action LIKE 'bundle.%'"
            " ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def _upload(client: Client, path: Path, **extra):
    data = {"bundle": SimpleUploadedFile("b.zip", path.read_bytes(), "application/zip"), **extra}
    return client.post("/bundles/import", data, follow=True)


def test_an_admin_sees_the_page_and_the_header_link(make_database):
    path = make_database(companies=[], users=[ADMIN])
    client = _signed_in(path)
    home = client.get("/", follow=True)
    assert b'class="bundles-link" href="/bundles/"' in home.content
    page = client.get("/bundles/")
    assert page.status_code == 200
    assert b'action="/bundles/export"' in page.content
    assert b'action="/bundles/import"' in page.content


def test_export_downloads_the_selected_databases_bundle(make_database, tmp_path):
    path = make_database(name="Site A", companies=["Acme", "Bolt"], users=[ADMIN])
    client = _signed_in(path)
    response = client.post("/bundles/export")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="Site-A-') and disposition.endswith('.zip"')
    download = tmp_path / "download.zip"
    download.write_bytes(b"".join(response.streaming_content))
    bundle = package.load(download)
    assert bundle.counts == {"companies.company": 2, "companies.project": 0}
    assert not bundle.include_users
    assert _audit(path) == [("bundle.export", "success", "admin")]

    with_users = client.post("/bundles/export", {"include_users": "on"})
    (tmp_path / "u.zip").write_bytes(b"".join(with_users.streaming_content))
    assert package.load(tmp_path / "u.zip").counts["accounts.user"] == 1


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "temporary-file"])
def test_import_uploads_into_an_empty_database(make_database, tmp_path, settings, in_memory):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440 if in_memory else 0
    source = make_database(companies=["Acme", "Bolt"])
    bundle = package.export(
        engines.register(str(source)).alias,
        tmp_path / "b.zip",
        name="b",
        version=1,
    )
    target = make_database(companies=[], users=[ADMIN])
    client = _signed_in(target)
    response = _upload(client, bundle.path)
    assert response.status_code == 200
    assert "Imported b@1: 2 company rows, 0 project rows." in messages_of(response)
    assert domain_snapshot(target) == domain_snapshot(source)
    assert _audit(target) == [("bundle.import", "success", "admin")]
    # Now it holds data: the form is gone and another import is refused.
    assert b"import-unavailable" in client.get("/bundles/").content
    again = _upload(client, bundle.path)
    assert again.status_code == 400
    assert b"already holds companies or projects" in again.content


def test_a_bad_upload_is_refused_with_its_reason_and_changes_nothing(make_database, tmp_path):
    target = make_database(companies=[], users=[ADMIN])
    client = _signed_in(target)
    before = dump_without_audit(target)
    bad = make_bundle(
        tmp_path / "bad.zip", companies=[company(1, "A")], projects=[project(1, "P", 2)]
    )
    response = _upload(client, bad)
    assert response.status_code == 400
    assert b"Nothing was imported." in response.content
    assert b"company_id 2 names no row of companies.company" in response.content
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert _upload(client, tmp_path / "junk.zip").status_code == 400
    assert client.post("/bundles/import", {}).status_code == 400
    assert dump_without_audit(target) == before
    assert [a[:2] for a in _audit(target)] == [("bundle.import", "refused")] * 2


def test_an_upload_over_the_limit_is_refused_with_413(make_database, tmp_path, settings):
    settings.NUKEWORKS_BUNDLE_UPLOAD_MAX_BYTES = 50_000
    target = make_database(companies=[], users=[ADMIN])
    client = _signed_in(target)
    big = make_bundle(tmp_path / "big.zip", companies=[company(1, "A", notes="x" * 10)])
    big.write_bytes(big.read_bytes() + b"\0" * 200_000)  # over the limit as declared
    response = client.post(
        "/bundles/import", {"bundle": SimpleUploadedFile("b.zip", big.read_bytes())}
    )
    assert response.status_code == 413
    assert b"larger than the limit" in response.content
    # A body whose declared size passes the first check: the file's own size is checked.
    stream = client.post(
        "/bundles/import", {"bundle": SimpleUploadedFile("b.zip", b"\0" * 100_000)}
    )
    assert stream.status_code == 413
    assert rows_of(target, "SELECT COUNT(*) FROM companies_company") == [(0,)]


def test_non_admins_get_403_and_their_attempts_are_audited(make_database, tmp_path):
    path = make_database(companies=[], users=[ADMIN, CLERK])
    client = _signed_in(path, "clerk", "clerk-pw")
    assert client.get("/bundles/").status_code == 403
    assert client.post("/bundles/export").status_code == 403
    bundle = make_bundle(tmp_path / "b.zip", companies=[company(1, "A")])
    response = client.post(
        "/bundles/import", {"bundle": SimpleUploadedFile("b.zip", bundle.read_bytes())}
    )
    assert response.status_code == 403
    assert rows_of(path, "SELECT COUNT(*) FROM companies_company") == [(0,)]
    assert [a[:2] for a in _audit(path)] == [("bundle.denied", "denied")] * 2
    anonymous = Client()
    select(anonymous, path)
    assert anonymous.post("/bundles/export").status_code in (302, 403)
    assert anonymous.get("/bundles/").status_code in (302, 403)


@pytest.mark.parametrize("url", ["/bundles/export", "/bundles/import"])
def test_posts_need_the_csrf_token(make_database, tmp_path, url):
    path = make_database(companies=[], users=[ADMIN])
    client = Client(enforce_csrf_checks=True)
    client.get("/select-db")
    token = client.cookies["csrftoken"].value
    select(client, path, csrfmiddlewaretoken=token)
    signed_in = client.post(
        "/login/", {"username": "admin", "password": "admin-pw", "csrfmiddlewaretoken": token}
    )
    assert signed_in.status_code == 302
    bundle = make_bundle(tmp_path / "b.zip", companies=[company(1, "A")])

    refused = client.post(url, {"bundle": SimpleUploadedFile("b.zip", bundle.read_bytes())})
    assert refused.status_code == 403 and "CSRF" in refused.content.decode()
    assert rows_of(path, "SELECT COUNT(*) FROM companies_company") == [(0,)]

    token = client.cookies["csrftoken"].value
    data = {
        "bundle": SimpleUploadedFile("b.zip", bundle.read_bytes()),
        "csrfmiddlewaretoken": token,
    }
    assert client.post(url, data).status_code in (200, 302)
