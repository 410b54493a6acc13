"""Export and import (bundles) of PostgreSQL databases of the catalog (issue 17).

A real PostgreSQL server (tests/services.py): a PostgreSQL database with companies, a project
and attachments (their bytes in databases/<label>/payloads/) is exported by `exportdb` and the
Export page, imported by `importdb --new` into a new PostgreSQL database (CREATE DATABASE on the
server of an existing entry, registered once complete) and into a SQLite file, and by the
Import page into an empty PostgreSQL database: the same rows, the same bytes.
"""

from __future__ import annotations

import io
import os
import secrets
import sqlite3
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import Client

from bundles import package
from bundles.newdb import database_path, temp_dbname
from dbselect import catalog, engines, state
from dbselect.conf import get_config
from nukeworks.attachments import service
from nukeworks.companies.models import Company, Project
from tests.helpers import messages_of, select, sign_in
from tests.services import database_names

ADMIN = ("boss", "boss-pw", True)
REPORT = os.urandom(200_000) + b"report"
DRAWING = b"\x89PNG\r\n\x1a\n" + os.urandom(20_000)


def _alias(target: str) -> str:
    return engines.register(target).alias


@pytest.fixture
def server(postgres_url):
    """The test server's URL; every database a test created through NukeWorks is dropped."""
    return postgres_url


@pytest.fixture
def source(make_pg_database) -> str:
    """A PostgreSQL database: companies Acme and Bolt (not the first keys), project Unit 1 of
    Bolt, three attachments naming two payloads."""
    target = make_pg_database(
        "pgsrc", name="PG Source", companies=["Gone", "Acme", "Bolt"], users=[ADMIN]
    )
    alias = _alias(target)
    Company.objects.using(alias).filter(name="Gone").delete()
    acme = Company.objects.using(alias).get(name="Acme")
    bolt = Company.objects.using(alias).get(name="Bolt")
    unit = Project.objects.using(alias).create(name="Unit 1", company=bolt)
    boss = get_user_model().objects.using(alias).get(username="boss")
    with state.override(alias):
        service.add(acme, SimpleUploadedFile("report.pdf", REPORT), user=boss)
        service.add(bolt, SimpleUploadedFile("copy of report.pdf", REPORT))
        service.add(unit, SimpleUploadedFile("drawing.png", DRAWING))
    connections[alias].close()
    return target


def _rows(target: str | Path) -> dict[str, list[tuple]]:
    """What a database holds, by names (never keys): companies, projects, attachments."""
    alias = _alias(str(target))
    try:
        return {
            "companies": sorted(
                Company.objects.using(alias).values_list("name", "country", "website")
            ),
            "projects": sorted(
                Project.objects.using(alias).values_list("name", "company__name", "status")
            ),
            "attachments": sorted(
                (a.name, a.sha256, a.size, a.content_type, a.owner.name)
                for a in service.Attachment.objects.using(alias).all()
            ),
        }
    finally:
        connections[alias].close()


def _store(target: str | Path) -> dict[str, bytes]:
    root = Path(get_config()["DATABASES_DIR"]) / (
        catalog.label_of(str(target)) or Path(target).parent.name
    )
    return {
        p.name: p.read_bytes()
        for p in (root / "payloads").rglob("*")
        if p.is_file() and len(p.name) == 64
    }


def _run(name: str, *args: str) -> str:
    out = io.StringIO()
    call_command(name, *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _downloads(target: str) -> dict[str, bytes]:
    client = Client()
    select(client, target)
    assert sign_in(client, "boss", "boss-pw").status_code == 302
    alias = _alias(target)
    found = {}
    for attachment in service.Attachment.objects.using(alias).all():
        response = client.get(f"/attachments/{attachment.pk}/download")
        assert response.status_code == 200, attachment.name
        found[attachment.name] = b"".join(response.streaming_content)
    return found


EXPECTED = {"report.pdf": REPORT, "copy of report.pdf": REPORT, "drawing.png": DRAWING}


def test_exportdb_of_a_postgres_database_imports_into_postgres_and_into_a_file(
    source, server, tmp_path
):
    bundle_path = tmp_path / "pg.zip"
    printed = _run("exportdb", "pgsrc", "-o", str(bundle_path), "--users")
    assert "Exported pgsrc" in printed
    bundle = package.load(bundle_path)
    assert bundle.counts == {
        "companies.company": 2,
        "companies.project": 1,
        "attachments.attachment": 3,
        "accounts.user": 1,
    }
    assert len(bundle.payloads) == 2

    # Into a new PostgreSQL database on the server of pgsrc, registered once complete.
    dbname = f"nw_pgcopy_{secrets.token_hex(3)}"
    printed = _run(
        "importdb",
        str(bundle_path),
        "--new",
        "pgcopy",
        "--display-name",
        "PG Copy",
        "--postgres-like",
        "pgsrc",
        "--postgres-dbname",
        dbname,
    )
    assert "Created pgcopy" in printed and "postgresql:pgcopy" in printed
    entry = catalog.get("pgcopy")
    assert entry is not None and entry.url.dbname == dbname and entry.display_name == "PG Copy"
    assert entry.url.host == server.host and entry.url.port == server.port
    assert temp_dbname(dbname, "pgcopy") not in database_names(server)
    assert _rows("postgresql:pgcopy") == _rows(source)
    assert _store("postgresql:pgcopy") == _store(source)
    assert _downloads("postgresql:pgcopy") == EXPECTED
    # The keys were given by the import: the next row the application adds gets a free one.
    alias = _alias("postgresql:pgcopy")
    Company.objects.using(alias).create(name="Added after import", country="X")
    service.Attachment.objects.using(alias).filter(name="drawing.png").delete()
    connections[alias].close()

    # Into a SQLite file: the same rows, the same bytes.
    _run("importdb", str(bundle_path), "--new", "filecopy")
    assert _rows(database_path("filecopy")) == _rows(source)
    assert _store(database_path("filecopy")) == _store(source)
    conn = sqlite3.connect(database_path("filecopy"))
    try:
        assert conn.execute("SELECT value FROM system_settings WHERE key='seed_status'").fetchone()
    finally:
        conn.close()


def test_the_pages_export_a_postgres_database_and_import_into_an_empty_one(
    source, make_pg_database, tmp_path
):
    client = Client()
    select(client, source)
    sign_in(client, "boss", "boss-pw")
    assert client.get("/bundles/").status_code == 200
    exported = client.post("/bundles/export")
    assert exported.status_code == 200
    download = tmp_path / "download.zip"
    download.write_bytes(b"".join(exported.streaming_content))
    assert package.load(download).counts["attachments.attachment"] == 3

    empty = make_pg_database("pgempty", name="Empty", users=[ADMIN])
    other = Client()
    select(other, empty)
    sign_in(other, "boss", "boss-pw")
    response = other.post(
        "/bundles/import",
        {"bundle": SimpleUploadedFile("b.zip", download.read_bytes(), "application/zip")},
        follow=True,
    )
    assert response.status_code == 200
    assert any("3 attachment rows" in m for m in messages_of(response)), messages_of(response)
    assert _rows(empty) == _rows(source)
    assert _downloads(empty) == EXPECTED
    # A second import is refused: the database holds data now.
    again = other.post(
        "/bundles/import",
        {"bundle": SimpleUploadedFile("b.zip", download.read_bytes(), "application/zip")},
    )
    assert again.status_code == 400


def test_importdb_into_postgres_refuses_a_taken_name_and_cleans_up_a_failure(
    source, server, tmp_path, make_pg_database
):
    bundle_path = tmp_path / "pg.zip"
    _run("exportdb", "pgsrc", "-o", str(bundle_path))
    taken_db = catalog.get("pgsrc").url.dbname
    with pytest.raises(CommandError, match="has a database named"):
        _run(
            "importdb", str(bundle_path), "--new", "clash", "--postgres-like", "pgsrc",
            "--postgres-dbname", taken_db,
        )  # fmt: skip
    assert catalog.get("clash") is None
    with pytest.raises(CommandError, match="registered in the catalog already"):
        _run("importdb", str(bundle_path), "--new", "pgsrc", "--postgres-like", "pgsrc")
    with pytest.raises(CommandError, match="No PostgreSQL database is registered"):
        _run("importdb", str(bundle_path), "--new", "x", "--postgres-like", "nope")

    # A bundle that fails while it is applied: the half-made database is dropped.
    target = make_pg_database("holder", name="Holder", companies=["Acme"])
    bad = tmp_path / "bad.zip"
    _run("exportdb", "holder", "-o", str(bad))
    before = set(database_names(server))
    from bundles import newdb

    real = newdb.apply

    def broken(*args, **kwargs):
        real(*args, **kwargs)
        raise package.BundleError("the disk said no")

    newdb.apply = broken
    try:
        with pytest.raises(CommandError, match="the disk said no"):
            _run(
                "importdb", str(bad), "--new", "halfway", "--postgres-like", "pgsrc",
                "--postgres-dbname", "nw_halfway_t",
            )  # fmt: skip
    finally:
        newdb.apply = real
    assert set(database_names(server)) == before
    assert catalog.get("halfway") is None
    assert not (Path(get_config()["DATABASES_DIR"]) / "halfway" / "payloads").exists()
    assert target  # the database the bundle came from is untouched
    assert _rows(target)["companies"] == [("Acme", "Testland", "")]
