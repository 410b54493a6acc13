"""Archiving a database: "Archive…" for operators and `manage.py archivedb`, on real files.

The whole folder moves to databases/.archive/<label>-<time>/ (nothing deleted), the database
is no longer listed nor selectable, sessions on it fall back with the banner, `--restore`
brings it back (refusing a taken label), operator databases are never archived, and nobody
but an operator reaches the page.
"""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from dbselect import scanner
from dbselect.layout import archive_dir
from provisioning import archive
from tests.copy_helpers import (
    ADMIN,
    CLERK,
    OPERATOR,
    attach,
    audit,
    databases_dir,
    display_name,
    payload_file,
    rows,
    signed_in,
)
from tests.helpers import messages_of, select, sign_in

DOC = b"archived contract " * 300


@pytest.fixture
def default(make_database) -> Path:
    return make_database(name="Default", label="default", users=[OPERATOR])


@pytest.fixture
def site(make_database) -> Path:
    path = make_database(name="Site", companies=["Acme"], users=[ADMIN, CLERK], label="site")
    attach(path, DOC, "contract.pdf")
    return path


@pytest.fixture
def operator(default, site) -> Client:
    """Signed in to the operator database first, then to `site` (where it works now)."""
    client = signed_in(default, OPERATOR)
    assert select(client, site).status_code == 302
    assert sign_in(client, ADMIN[0], ADMIN[1]).status_code == 302
    return client


def _files(folder: Path) -> list[str]:
    """Every file under `folder` but SQLite's -wal/-shm (the archive checkpoints and closes)."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if not p.name.endswith(("-wal", "-shm"))
    )


def archivedb(*args: str) -> str:
    out = io.StringIO()
    call_command("archivedb", *args, "--noinput", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_an_operator_archives_a_database_and_sessions_on_it_fall_back(operator, default, site):
    # Someone else works on the site after working on the default database.
    other = signed_in(default, OPERATOR)
    select(other, site)
    sign_in(other, CLERK[0], CLERK[1])
    assert other.get("/companies/").status_code == 200

    page = operator.get("/database/archive")
    assert page.status_code == 200 and 'id="archive-form"' in page.content.decode()
    files_before = _files(site.parent)
    response = operator.post("/database/archive", follow=True)
    assert response.status_code == 200
    assert any("was archived to" in m for m in messages_of(response))
    # The whole folder moved, every file of it; nothing was deleted.
    assert not site.parent.exists()
    [moved] = list(archive_dir().iterdir())
    assert re.fullmatch(r"site-\d{8}-\d{6}", moved.name)
    assert _files(moved) == files_before
    in_store = payload_file(site, DOC).relative_to(site.parent)  # payloads/<aa>/<sha256>
    assert (moved / in_store).read_bytes() == DOC
    assert rows(moved / "nukeworks.sqlite", "SELECT name FROM companies_company") == [("Acme",)]
    # The archiving session went back to the database it used before.
    assert response.redirect_chain[-1][0] == "/"
    assert operator.session["selected_db_path"] == str(default)
    # Not listed any more.
    assert "site" not in [db.label for db in scanner.scan()]
    assert "Site" not in operator.get("/select-db").content.decode()
    # The other session falls back to its previous database, with the banner.
    fallen = other.get("/companies/", follow=True)
    banners = messages_of(fallen)
    assert any(
        m.startswith("Your selected database could not be opened. Reverted to Default.")
        for m in banners
    ), banners
    assert other.session["selected_db_path"] == str(default)
    # Audited in the archived database itself.
    [(outcome, username, detail)] = audit(moved / "nukeworks.sqlite", "database.archive")
    assert outcome == "success" and username == ADMIN[0] and str(moved) in detail


def test_an_archived_database_cannot_be_selected_by_its_path(operator, site):
    operator.post("/database/archive")
    [moved] = list(archive_dir().iterdir())
    visitor = Client()
    response = visitor.post("/select-db", {"path": str(moved / "nukeworks.sqlite")})
    assert response.status_code != 302
    assert "This database is archived" in response.content.decode()
    # Nor through a link to it.
    link = databases_dir().parent / "sneaky.sqlite"
    link.symlink_to(moved / "nukeworks.sqlite")
    response = visitor.post("/select-db", {"path": str(link)})
    assert "This database is archived" in response.content.decode()
    assert "selected_db_path" not in visitor.session


def test_archivedb_archives_lists_and_restores(site):
    output = archivedb("site")
    assert "Archived 'site' to" in output
    [moved] = list(archive_dir().iterdir())
    listing = archivedb("--list")
    assert moved.name in listing and "“Site”" in listing
    assert not site.exists()
    restored = archivedb("--restore", moved.name)
    assert str(site) in restored
    assert site.is_file() and not moved.exists()
    assert display_name(site) == "Site"
    assert payload_file(site, DOC).read_bytes() == DOC
    outcomes = [a for (a,) in rows(site, "SELECT action FROM audit_auditentry ORDER BY id")]
    assert outcomes[-2:] == ["database.archive", "database.unarchive"]
    # Selectable again.
    client = signed_in(site, ADMIN)
    assert client.get("/companies/").status_code == 200
    assert "(none)" in archivedb("--list")


def test_restore_refuses_a_taken_label_and_takes_another(site, make_database):
    from snapshots import service

    snapshot = service.create_snapshot(str(site), note="before archiving")
    archivedb("site")
    [moved] = list(archive_dir().iterdir())
    make_database(name="New site", label="site")  # the label was reused meanwhile
    with pytest.raises(CommandError, match="exists already"):
        archivedb("--restore", moved.name)
    with pytest.raises(CommandError, match="label"):
        archivedb("--restore", moved.name, "--label", "../x")
    assert moved.is_dir()
    [outcome, outcome2] = [o for o, _, _ in audit(moved / "nukeworks.sqlite", "database.unarchive")]
    assert outcome == outcome2 == "failure"
    archivedb("--restore", moved.name, "--label", "old-site")
    old = databases_dir() / "old-site" / "nukeworks.sqlite"
    assert display_name(old) == "Site" and display_name(site) == "New site"
    # Its snapshots follow the new label, so they are listed (and restorable) again.
    [listed] = service.list_snapshots(str(old))
    assert listed.name == "old-site" + snapshot.name[len("site") :]
    assert listed.sha256 == snapshot.sha256
    with pytest.raises(CommandError, match="no archived database"):
        archivedb("--restore", "../site-20200101-000000")


def test_operator_databases_are_never_archived(operator, default):
    with pytest.raises(CommandError, match="never archived"):
        archivedb("default")
    assert default.is_file()
    select(operator, default)
    page = operator.get("/database/archive")
    assert 'id="archive-refused"' in page.content.decode()
    assert operator.post("/database/archive").status_code == 409
    assert default.is_file() and not archive_dir().exists()
    assert "denied" in [o for o, _, _ in audit(default, "database.archive")]
    details = operator.get("/database/").content.decode()
    assert 'id="archive-link"' not in details


def test_unknown_and_bad_labels_are_refused(site):
    with pytest.raises(CommandError, match="No database is labelled"):
        archivedb("nowhere")
    with pytest.raises(CommandError, match="label"):
        archivedb("../site")
    assert site.is_file()


def test_only_operators_reach_the_archive_page(default, site):
    admin = signed_in(site, ADMIN)  # an admin of the site, but no operator
    clerk = signed_in(site, CLERK)
    anonymous = Client()
    select(anonymous, site)
    for client in (admin, clerk, anonymous):
        assert client.get("/database/archive").status_code == 403
        assert client.post("/database/archive").status_code == 403
    assert site.is_file()
    assert [o for o, _, _ in audit(site, "database.archive")] == ["denied"] * 3
    assert 'id="archive-link"' not in admin.get("/database/").content.decode()


def test_archive_waits_for_a_request_in_flight(site):
    """The gate: an archive waits for the requests working on the database, then moves it."""
    from dbselect import engines
    from dbselect.engines import gate

    path = engines.register(str(site)).path
    entered, release = threading.Event(), threading.Event()

    def request_in_flight() -> None:
        gate.enter(path)
        entered.set()
        release.wait(10)
        gate.leave_all()

    thread = threading.Thread(target=request_in_flight)
    thread.start()
    entered.wait(5)
    with pytest.raises(archive.ProvisioningError, match="kept working"):
        archive.archive("site", timeout=0.3)
    assert site.is_file()
    release.set()
    thread.join()
    archived = archive.archive("site", timeout=5)
    assert archived.path.is_dir() and not site.exists()
    assert [o for o, _, _ in audit(archived.database, "database.archive")] == [
        "failure",
        "success",
    ]
