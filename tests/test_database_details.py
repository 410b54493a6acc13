"""The database details page (/database/): what an admin of the session's database sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from snapshots import service
from tests.copy_helpers import ADMIN, CLERK, OPERATOR, attach, payload_file, signed_in
from tests.helpers import select, sign_in

DOC = b"a document for the details page " * 100


@pytest.fixture
def site(make_database) -> Path:
    path = make_database(name="Site", companies=["Acme"], users=[ADMIN, CLERK], label="site")
    attach(path, DOC, "doc.pdf")
    return path


def test_an_admin_sees_the_database_as_a_whole(site):
    service.create_snapshot(str(site))
    client = signed_in(site, ADMIN)
    home = client.get("/").content.decode()
    assert 'class="details-link" href="/database/"' in home
    page = client.get("/database/")
    assert page.status_code == 200
    html = page.content.decode()
    assert str(site) in html and "Site" in html
    assert "Up to date" in html
    assert '<td id="db-snapshots">1 in' in html
    # The attachments' integrity (the lead's report), without reading the files by default.
    assert page.context["report"].ok and page.context["report"].files == 1
    assert "Attachment files" in html and "Verify file contents" in html
    for link in ("/snapshots/", "/bundles/", "/database/duplicate"):
        assert f'href="{link}"' in html
    # Archive is for operators only.
    assert 'id="archive-link"' not in html


def test_verifying_reports_a_corrupt_and_a_missing_file(site):
    client = signed_in(site, ADMIN)
    stored = payload_file(site, DOC)
    stored.chmod(0o644)
    stored.write_bytes(b"changed behind our back")
    page = client.get("/database/?verify=1")
    report = page.context["report"]
    assert report.hashes_verified and report.corrupt == [stored.name]
    assert "Corrupt: 1 file" in page.content.decode()
    stored.unlink()
    page = client.get("/database/")
    assert page.context["report"].missing == [stored.name]
    assert "Missing: 1 file" in page.content.decode()


def test_an_operator_sees_the_archive_link(make_database, site):
    default = make_database(name="Default", label="default", users=[OPERATOR])
    client = signed_in(default, OPERATOR)
    select(client, site)
    sign_in(client, ADMIN[0], ADMIN[1])
    html = client.get("/database/").content.decode()
    assert 'id="archive-link" href="/database/archive"' in html


def test_only_admins_of_the_database_see_it(site):
    clerk = signed_in(site, CLERK)
    assert clerk.get("/database/").status_code == 403
    assert 'href="/database/"' not in clerk.get("/").content.decode()
    anonymous = Client()
    select(anonymous, site)
    assert anonymous.get("/database/").status_code == 403
    # Without a database, the selector first.
    assert Client().get("/database/")["Location"].startswith("/select-db")
