"""Faults while a session works on its database: a banner or a 503 page, never a 500.

Between two requests the selected file is deleted, truncated, replaced, corrupted, made
read-only or locked by another process. Each case asserts the status code, the words shown,
which database the session is on afterwards, and that a write which failed was neither
stored nor reported as saved.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections
from django.test import Client

from dbselect import session as db_session
from tests.helpers import backup_copy, messages_of, remove_database, select, sign_in

BANNER = "Your selected database could not be opened. Reverted to Safe Harbour. Reason: "
NEW_COMPANY = {"name": "Written During Fault", "country": "Testland"}


@pytest.fixture
def fast_busy_timeout(settings) -> None:
    """A short busy timeout; set before the files are made (options are read at registration)."""
    settings.DBSELECT = {**settings.DBSELECT, "BUSY_TIMEOUT": 0.2}


@pytest.fixture
def on_fragile(make_database, fast_busy_timeout) -> tuple[Client, Path, Path]:
    """A signed-in session on "Fragile", which came from "Safe Harbour"."""
    client = Client()
    safe = make_database(name="Safe Harbour", companies=["Safe Co"], users=[("op", "pw", False)])
    fragile = make_database(name="Fragile", companies=["Fragile Co"], users=[("op", "pw", False)])
    select(client, safe)
    sign_in(client, "op", "pw")  # one sign-in per database
    select(client, fragile)
    sign_in(client, "op", "pw")
    assert ">Fragile Co</a>" in client.get("/companies/").content.decode()
    between_requests()
    return client, safe, fragile


def between_requests() -> None:
    """Close this thread's connections, as a server does at the end of every request.

    Django's test client keeps them open across requests; a real worker (CONN_MAX_AGE=0)
    opens the file afresh for the next request, which is what the faults below meet.
    """
    connections.close_all()


def company_names(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM companies_company ORDER BY name")]
    finally:
        conn.close()


def no_saved_message(client: Client) -> None:
    page = client.get("/companies/", follow=True)
    assert not any("saved" in m for m in messages_of(page))


# -- the file stops being a usable database between requests: fallback with the banner --


def _delete(fragile: Path, make_database) -> str:
    remove_database(fragile)
    return "The database file no longer exists."


def _truncate_to_one_page(fragile: Path, make_database) -> str:
    with open(fragile, "r+b") as fh:
        fh.truncate(4096)
    # Told by SQLite (the live file is never read raw): its own check of the page count when
    # the WAL is empty, else the malformed page it meets.
    return ("The file is truncated: SQLite expects", "database disk image is malformed")


def _truncate_to_zero(fragile: Path, make_database) -> str:
    with open(fragile, "r+b") as fh:
        fh.truncate(0)
    return "The file is not a SQLite database"


def _replace_by_rename(fragile: Path, make_database) -> str:
    impostor = make_database(name="Impostor", companies=["Impostor Co"])
    os.replace(impostor, fragile)
    return "The database file was replaced by a different file."


def _overwrite_with_other_application(fragile: Path, make_database) -> str:
    other = fragile.parent / "other-app.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    backup_copy(other, fragile)  # same inode, new content
    # The file shrank, so it is validated again (through SQLite) before the query runs;
    # had it not shrunk, the query's own error tells.
    return (
        "This is a SQLite database, but not a NukeWorks one",
        "The database file became unreadable while in use (no such table:",
    )


def _corrupt_companies_page(fragile: Path, make_database) -> str:
    conn = sqlite3.connect(fragile)
    (root,) = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'companies_company'"
    ).fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with open(fragile, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xa5" * page_size)
    return "The database file became unreadable while in use (database disk image is malformed)"


UNUSABLE = {
    "deleted": _delete,
    "truncated to one page": _truncate_to_one_page,
    "truncated to 0 bytes": _truncate_to_zero,
    "replaced (rename over it)": _replace_by_rename,
    "overwritten in place by another application's database": _overwrite_with_other_application,
    "page of a table corrupted": _corrupt_companies_page,
}


@pytest.mark.parametrize("case", UNUSABLE, ids=list(UNUSABLE))
def test_unusable_file_on_read_reverts_with_the_banner(case, on_fragile, make_database):
    client, safe, fragile = on_fragile
    reason = UNUSABLE[case](fragile, make_database)
    response = client.get("/companies/")
    assert response.status_code == 302
    assert response["Location"] == "/companies/"
    page = client.get(response["Location"])
    assert page.status_code == 200
    [banner] = [m for m in messages_of(page) if m.startswith("Your selected database")]
    assert banner.startswith(BANNER)
    assert any(r in banner for r in ((reason,) if isinstance(reason, str) else reason))
    text = page.content.decode()
    assert ">Safe Co</a>" in text
    assert ">Fragile Co</a>" not in text and ">Impostor Co</a>" not in text
    assert client.session[db_session.SELECTED_PATH] == str(safe)


@pytest.mark.parametrize("case", UNUSABLE, ids=list(UNUSABLE))
def test_unusable_file_on_write_saves_nothing_anywhere(case, on_fragile, make_database):
    client, safe, fragile = on_fragile
    UNUSABLE[case](fragile, make_database)
    response = client.post("/companies/new/", NEW_COMPANY)
    assert response.status_code == 302  # a redirect, not the form's "saved" redirect target
    assert not response["Location"].startswith("/companies/1")
    page = client.get(response["Location"], follow=True)
    texts = messages_of(page)
    assert not any("saved" in m and "not saved" not in m for m in texts)
    assert NEW_COMPANY["name"] not in company_names(safe)
    assert client.session[db_session.SELECTED_PATH] == str(safe)


def test_fault_found_by_the_view_says_the_change_was_not_saved(on_fragile, make_database):
    client, _, fragile = on_fragile
    _overwrite_with_other_application(fragile, make_database)
    response = client.post("/companies/new/", NEW_COMPANY, follow=True)
    [banner] = [m for m in messages_of(response) if m.startswith("Your selected database")]
    assert banner.endswith("Your change was not saved.")


def test_without_previous_database_a_fault_goes_back_to_the_selector(make_database):
    client = Client()
    only = make_database(name="Only", companies=["Only Co"], users=[("op", "pw", False)])
    select(client, only)
    sign_in(client, "op", "pw")
    between_requests()
    _overwrite_with_other_application(only, make_database)
    response = client.get("/companies/")
    assert response.status_code == 302
    assert response["Location"].startswith("/select-db")
    page = client.get(response["Location"])
    assert any("no previous database to return to" in m for m in messages_of(page))
    assert db_session.SELECTED_PATH not in client.session


# -- the file is fine but cannot take the request now: 503 page, session stays --


@contextlib.contextmanager
def write_lock(path: Path, *, exclusive: bool = False) -> Iterator[None]:
    """Hold a write transaction on `path` from another thread's own connection."""
    ready, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=5)
            if exclusive:
                # Exclusive locking mode: not even WAL readers get in.
                conn.execute("PRAGMA locking_mode=EXCLUSIVE")
                conn.execute("BEGIN EXCLUSIVE")
                conn.execute("UPDATE system_settings SET value = value")
            else:
                conn.execute("BEGIN IMMEDIATE")
            ready.set()
            done.wait(30)
            conn.execute("ROLLBACK")
            conn.close()
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    ready.wait(10)
    assert not errors, errors
    try:
        yield
    finally:
        done.set()
        thread.join(10)


def _busy_page(response) -> str:
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    text = response.content.decode()
    assert "Database busy, try again" in text
    assert "another user or program kept it locked for longer than 0.2 seconds" in text
    assert "Traceback" not in text
    return text


def test_write_while_another_process_holds_the_lock_gives_the_busy_page(on_fragile):
    client, _, fragile = on_fragile
    with write_lock(fragile):
        response = client.post("/companies/new/", NEW_COMPANY)
        text = _busy_page(response)
        between_requests()
        assert "Your change was not saved." in text
        # WAL readers are not blocked by a writer: reading still works meanwhile.
        assert client.get("/companies/").status_code == 200
        between_requests()
    assert NEW_COMPANY["name"] not in company_names(fragile)
    assert client.session[db_session.SELECTED_PATH] == str(fragile)
    no_saved_message(client)
    # Once the lock is gone, the same POST works and saves once.
    assert client.post("/companies/new/", NEW_COMPANY).status_code == 302
    assert company_names(fragile).count(NEW_COMPANY["name"]) == 1


def test_read_while_another_process_holds_an_exclusive_lock(on_fragile):
    client, _, fragile = on_fragile
    with write_lock(fragile, exclusive=True):
        text = _busy_page(client.get("/companies/"))
        assert "Nothing was changed." in text
        assert 'href="/companies/">Try again</a>' in text
        between_requests()
    assert client.session[db_session.SELECTED_PATH] == str(fragile)
    assert client.get("/companies/").status_code == 200


def test_sign_in_while_locked_gives_the_busy_page(make_database, fast_busy_timeout):
    client = Client()
    path = make_database(name="Locked", users=[("op", "pw", False)])
    select(client, path)
    between_requests()
    with write_lock(path, exclusive=True):
        response = sign_in(client, "op", "pw")
        _busy_page(response)
        between_requests()
    assert client.session[db_session.SELECTED_PATH] == str(path)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` read-only for this process (root ignores modes: use the immutable flag)."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a file read-only")
        result = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if result.returncode:
            pytest.skip(f"chattr +i is not supported here: {result.stderr.decode().strip()}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(mode)


def test_write_to_a_read_only_file_gives_a_clear_page(on_fragile):
    client, _, fragile = on_fragile
    with read_only(fragile):
        response = client.post("/companies/new/", NEW_COMPANY)
        between_requests()
        assert response.status_code == 503
        text = response.content.decode()
        assert "Database is read-only" in text
        assert "The database file is read-only for the server." in text
        assert "Your change was not saved." in text
        assert "Traceback" not in text
        between_requests()
        # Reading a read-only file still works: the session is not moved anywhere.
        assert ">Fragile Co</a>" in client.get("/companies/").content.decode()
        between_requests()
    assert client.session[db_session.SELECTED_PATH] == str(fragile)
    assert NEW_COMPANY["name"] not in company_names(fragile)
    no_saved_message(client)


def test_disk_full_gives_a_clear_page(on_fragile, monkeypatch):
    """A full disk cannot be made safely in a test: the driver's error is injected."""
    from nukeworks.companies.models import Company

    client, _, fragile = on_fragile

    def full(*args, **kwargs):
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = 13
        from django.db import OperationalError

        raise OperationalError(str(error)) from error

    monkeypatch.setattr(Company, "save", full)
    response = client.post("/companies/new/", NEW_COMPANY)
    assert response.status_code == 503
    assert "The disk that holds the database is full." in response.content.decode()
    assert NEW_COMPANY["name"] not in company_names(fragile)


def test_errors_that_are_bugs_still_reach_django(on_fragile, monkeypatch):
    """An IntegrityError is a bug, not a file fault: not turned into a busy page."""
    from django.db import IntegrityError

    from dbselect import recovery

    assert recovery.classify(IntegrityError("UNIQUE constraint failed")) is None
    assert recovery.classify(ValueError("database is locked")) is None
    assert recovery.classify(sqlite3.OperationalError("database is locked")).kind is (
        recovery.FaultKind.BUSY
    )


def test_selecting_a_database_another_program_holds_exclusively(make_database, fast_busy_timeout):
    """Locked at selection time: never a 500; the session is never half-switched."""
    client = Client()
    home = make_database(name="Home Base", users=[("op", "pw", False)])
    locked = make_database(name="Held", users=[("op", "pw", False)])
    select(client, home)
    between_requests()
    with write_lock(locked, exclusive=True):
        response = select(client, locked)
        between_requests()
        assert response.status_code in (302, 400)
        if response.status_code == 400:
            assert any("locked by another program" in m for m in messages_of(response))
            assert client.session[db_session.SELECTED_PATH] == str(home)
        else:
            # Validation read the checkpointed file without locks (immutable); the first real
            # query then meets the lock: the busy page, on the database the user chose.
            assert client.session[db_session.SELECTED_PATH] == str(locked)
            _busy_page(sign_in(client, "op", "pw"))
            between_requests()
    assert sign_in(client, "op", "pw").status_code == 302


def _independently_created(make_database, name: str, company: str) -> Path:
    """A NukeWorks database created on its own (the fixture copies one template file)."""
    path = make_database(name=name, companies=[company])
    conn = sqlite3.connect(path)
    conn.execute(
        "UPDATE django_migrations SET applied = '2001-02-03 04:05:06' "
        "WHERE id = (SELECT min(id) FROM django_migrations)"
    )
    conn.commit()
    conn.close()
    return path


def test_overwritten_in_place_by_another_nukeworks_database(on_fragile, make_database):
    client, safe, fragile = on_fragile
    impostor = _independently_created(make_database, "Impostor", "Impostor Co")
    inode = fragile.stat().st_ino
    backup_copy(impostor, fragile)  # same inode, a valid NukeWorks database
    assert fragile.stat().st_ino == inode
    response = client.get("/companies/", follow=True)
    [banner] = [m for m in messages_of(response) if m.startswith("Your selected database")]
    assert banner == BANNER + "The database file was overwritten by a different database."
    text = response.content.decode()
    assert ">Impostor Co</a>" not in text and ">Safe Co</a>" in text
    assert client.session[db_session.SELECTED_PATH] == str(safe)
    # Selecting it again on purpose accepts the file as it now is.
    between_requests()
    select(client, fragile)
    sign_in(client, "op", "pw")
    assert client.session[db_session.SELECTED_PATH] == str(fragile)


def test_restoring_a_copy_of_the_same_database_is_not_flagged(on_fragile, make_database):
    client, _, fragile = on_fragile
    earlier = fragile.parent / "earlier.sqlite"
    backup_copy(fragile, earlier)
    assert client.post("/companies/new/", NEW_COMPANY).status_code == 302
    between_requests()
    backup_copy(earlier, fragile)  # what a restore does: same database, older content
    response = client.get("/companies/")
    assert response.status_code == 200
    text = response.content.decode()
    assert ">Fragile Co</a>" in text and f">{NEW_COMPANY['name']}</a>" not in text
    assert client.session[db_session.SELECTED_PATH] == str(fragile)


def test_the_busy_pages_try_again_link_stays_on_the_site():
    """A link built from //evil.example/ would lead a user off the site."""
    from django.test import RequestFactory

    from dbselect import recovery

    request = RequestFactory().get("/", PATH_INFO="//evil.example/")
    response = recovery.busy_page(request, recovery.Fault(recovery.FaultKind.BUSY, "Locked."))
    assert 'href="//' not in response.content.decode()
    assert "Try again" in response.content.decode()
