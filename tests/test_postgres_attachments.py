"""Attachments of a PostgreSQL database of the catalog, and its duplicate (issue 17).

A real PostgreSQL server (tests/services.py). The rows live in PostgreSQL, the bytes in
databases/<label>/payloads/ as for a file: upload, list, download and delete through the pages
and the API, `manage.py payloads list|gc <label>`, the integrity report of the Database page;
and a duplicate of the PostgreSQL database (a new database on its server, pg_dump | pg_restore,
attachments carried, registered in the catalog).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connections
from django.test import Client

from dbselect import catalog, engines
from dbselect.catalog import dsn, postgres
from dbselect.conf import get_config
from nukeworks.attachments import integrity
from nukeworks.attachments.models import Attachment
from nukeworks.companies.models import Company, Project
from tests.helpers import messages_of, select, sign_in

USER = ("clerk", "clerk-pw", False)
ADMIN = ("boss", "boss-pw", True)
CONTENT = os.urandom(150_000) + b"scan"
SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def docs(make_pg_database) -> str:
    return make_pg_database("pgdocs", name="PG Docs", companies=["Acme"], users=[USER, ADMIN])


def _alias(target: str) -> str:
    return engines.register(target).alias


def _acme(target: str) -> int:
    alias = _alias(target)
    try:
        return Company.objects.using(alias).get(name="Acme").pk
    finally:
        connections[alias].close()


def _signed_in(target: str, user: tuple[str, str, bool] = USER) -> Client:
    client = Client()
    select(client, target)
    assert sign_in(client, user[0], user[1]).status_code == 302
    return client


def _store(label: str) -> Path:
    return Path(get_config()["DATABASES_DIR"]) / label / "payloads"


def _payload_files(label: str) -> set[str]:
    return {p.name for p in _store(label).rglob("*") if p.is_file() and len(p.name) == 64}


def test_pages_upload_list_download_and_delete_on_a_postgres_database(docs, tmp_path):
    client = _signed_in(docs)
    acme = _acme(docs)
    response = client.post(
        f"/companies/{acme}/attachments/",
        {"file": SimpleUploadedFile("scan.pdf", CONTENT)},
        follow=True,
    )
    assert any("attached" in m for m in messages_of(response)), messages_of(response)
    page = response.content.decode()
    assert "scan.pdf" in page and "file missing" not in page
    # The bytes are in databases/pgdocs/payloads/<aa>/<sha256>, nowhere else.
    assert _payload_files("pgdocs") == {SHA}
    assert (_store("pgdocs") / SHA[:2] / SHA).read_bytes() == CONTENT
    assert not list(Path.cwd().glob("*.payloads")) and not list(tmp_path.glob("*.payloads"))
    alias = _alias(docs)
    row = Attachment.objects.using(alias).get()
    assert (row.sha256, row.size, row.uploaded_by_name) == (SHA, len(CONTENT), "clerk")

    download = client.get(f"/attachments/{row.pk}/download")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == CONTENT

    project = Project.objects.using(alias).create(name="Unit 1", company_id=acme)
    connections[alias].close()
    client.post(
        f"/projects/{project.pk}/attachments/",
        {"file": SimpleUploadedFile("same.pdf", CONTENT)},
    )
    assert Attachment.objects.using(alias).count() == 2
    assert _payload_files("pgdocs") == {SHA}  # equal content is stored once

    assert client.post(f"/attachments/{row.pk}/delete").status_code == 302
    assert Attachment.objects.using(alias).count() == 1
    connections[alias].close()


def test_the_api_uploads_lists_and_downloads_on_a_postgres_database(docs):
    base = "/api/v1/databases/pgdocs"
    token = Client().post(
        f"{base}/auth/token",
        {"username": "clerk", "password": "clerk-pw"},
        content_type="application/json",
    )
    assert token.status_code == 201, token.content
    headers = {"Authorization": f"Token {token.json()['token']}"}
    acme = _acme(docs)
    created = Client().post(
        f"{base}/attachments/",
        {"file": SimpleUploadedFile("api.bin", CONTENT), "company": acme},
        headers=headers,
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["sha256"] == SHA and body["company"] == acme and body["uploaded_by"] == "clerk"
    listed = Client().get(f"{base}/attachments/?company={acme}", headers=headers).json()
    assert [a["id"] for a in listed["results"]] == [body["id"]]
    content = Client().get(f"{base}/attachments/{body['id']}/content/", headers=headers)
    assert content.status_code == 200 and b"".join(content.streaming_content) == CONTENT
    assert _payload_files("pgdocs") == {SHA}
    assert Client().delete(f"{base}/attachments/{body['id']}/", headers=headers).status_code == 204


def test_payloads_gc_and_the_integrity_report_of_a_postgres_database(docs):
    client = _signed_in(docs)
    acme = _acme(docs)
    for name, content in (("keep.txt", b"kept content"), ("drop.txt", b"dropped content")):
        client.post(f"/companies/{acme}/attachments/", {"file": SimpleUploadedFile(name, content)})
    alias = _alias(docs)
    dropped = Attachment.objects.using(alias).get(name="drop.txt")
    client.post(f"/attachments/{dropped.pk}/delete")
    connections[alias].close()
    gone = hashlib.sha256(b"dropped content").hexdigest()

    out = io.StringIO()
    call_command("payloads", "list", "pgdocs", stdout=out)
    assert "2 file(s)" in out.getvalue() and "unreferenced: 1" in out.getvalue()
    out = io.StringIO()
    call_command("payloads", "gc", "pgdocs", "--dry-run", stdout=out)
    assert gone in out.getvalue() and "Would remove 1" in out.getvalue()
    assert gone in _payload_files("pgdocs")
    out = io.StringIO()
    call_command("payloads", "gc", "pgdocs", stdout=out)
    assert "Removed 1 unreferenced file(s)" in out.getvalue()
    assert _payload_files("pgdocs") == {hashlib.sha256(b"kept content").hexdigest()}

    # The integrity report (the Database page's, and dbcheck's with the rows read from the
    # database itself) of a PostgreSQL database.
    for from_file in (False, True):
        report = integrity.check(docs, rows_from_file=from_file)
        assert report.ok and report.hashes_verified and not report.extra
        assert (report.referenced_by_rows, report.files) == (1, 1)
        assert report.store == _store("pgdocs")


def test_duplicate_of_a_postgres_database_on_its_server(docs, postgres_server):
    server = dsn.parse(postgres_server.extra["url"])
    client = _signed_in(docs)
    acme = _acme(docs)
    client.post(f"/companies/{acme}/attachments/", {"file": SimpleUploadedFile("a.pdf", CONTENT)})
    admin = _signed_in(docs, ADMIN)
    form = admin.get("/database/duplicate")
    assert form.status_code == 200
    try:
        response = admin.post("/database/duplicate", {"label": "pgdup", "display_name": "PG Dup"})
        assert response.status_code == 302, response.content.decode()[:3000]
        assert response["Location"] == "/database/"
        entry = catalog.get("pgdup")
        assert entry is not None and entry.url.dbname == "nw_pgdup"
        assert (entry.url.host, entry.url.port) == (server.host, server.port)
        info = postgres.inspect(entry.target, entry.url)
        assert info.display_name == "PG Dup" and info.state.value == "up_to_date"
        # The same rows, the attachment carried (the payload in the copy's own store).
        copy = _alias(entry.target)
        assert list(Company.objects.using(copy).values_list("name", flat=True)) == ["Acme"]
        assert list(Attachment.objects.using(copy).values_list("sha256", flat=True)) == [SHA]
        assert _payload_files("pgdup") == {SHA}
        # Its keys go on from the source's: a new row gets a free one.
        Company.objects.using(copy).create(name="New in the copy", country="X")
        connections[copy].close()
        source = _alias(docs)
        assert Company.objects.using(source).count() == 1
        connections[source].close()
        # The duplicate is selectable and its users sign in with their passwords.
        other = _signed_in(entry.target)
        download = other.get(f"/attachments/{Attachment.objects.using(copy).get().pk}/download")
        assert b"".join(download.streaming_content) == CONTENT
        # A taken label is refused, nothing is changed.
        again = admin.post("/database/duplicate", {"label": "pgdup"})
        assert again.status_code == 409
    finally:
        connections.close_all()
        postgres.drop_database(server, "nw_pgdup")


def test_copydb_schema_only_and_the_refusals_of_archive_and_restore_as_new(docs, postgres_server):
    from provisioning import archive, copies
    from provisioning.service import ProvisioningError

    server = dsn.parse(postgres_server.extra["url"])
    try:
        out = io.StringIO()
        call_command("copydb", "pgdocs", "pgempty", "--schema-only", "--no-progress", stdout=out)
        assert "postgresql:pgempty" in out.getvalue()
        copy = _alias("postgresql:pgempty")
        # An empty domain; the admins kept with their passwords, the other users gone.
        assert Company.objects.using(copy).count() == 0
        users = get_user_model().objects.using(copy)
        assert list(users.values_list("username", flat=True)) == ["boss"]
        Company.objects.using(copy).create(name="First", country="X")
        connections[copy].close()
        other = Client()
        select(other, "postgresql:pgempty")
        assert sign_in(other, "boss", "boss-pw").status_code == 302
    finally:
        connections.close_all()
        postgres.drop_database(server, "nw_pgempty")

    with pytest.raises(ProvisioningError, match="PostgreSQL database: archiving") as refused:
        archive.archive("pgdocs", requested_by="t", via="test")
    assert refused.value.status == 409 and catalog.get("pgdocs") is not None
    with pytest.raises(ProvisioningError, match="not restored as a new database") as refused:
        copies.restore_as_new(docs, "any", "pgnew", requested_by="t", via="test")
    assert refused.value.status == 409 and catalog.get("pgnew") is None
    assert not (Path(get_config()["DATABASES_DIR"]) / "pgnew").exists()


def test_payloads_gc_keeps_what_a_pg_dump_snapshot_references(docs):
    from snapshots import service as snapshots

    client = _signed_in(docs)
    acme = _acme(docs)
    client.post(f"/companies/{acme}/attachments/", {"file": SimpleUploadedFile("s.pdf", CONTENT)})
    snapshot = snapshots.create_snapshot(docs, note="with the scan")
    assert snapshot.path.name.endswith(".pgdump") and snapshot.payloads == (SHA,)
    alias = _alias(docs)
    client.post(f"/attachments/{Attachment.objects.using(alias).get().pk}/delete")
    connections[alias].close()

    report = integrity.check(docs)
    assert report.ok and (report.referenced_by_rows, report.referenced_by_snapshots) == (0, 1)
    assert not report.unreadable_snapshots
    call_command("payloads", "gc", "pgdocs", stdout=io.StringIO())
    assert _payload_files("pgdocs") == {SHA}  # the snapshot still needs it
    snapshots.delete_snapshot(docs, snapshot.name)
    out = io.StringIO()
    call_command("payloads", "gc", "pgdocs", stdout=out)
    assert "Removed 1 unreferenced file(s)" in out.getvalue()
    assert _payload_files("pgdocs") == set()
