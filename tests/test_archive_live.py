"""Archiving on a real server: two gunicorn workers keep the database open (persistent
connections), sessions in both work on it; the archive closes it in every worker, moves the
folder, and every session falls back to its previous database with the banner."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.live import Browser, GunicornServer, open_files, set_password

PASSWORD = "pw-boss-12345"


@pytest.fixture
def server(tmp_path):
    srv = GunicornServer(
        tmp_path / "server",
        workers=2,
        threads=2,
        conn_max_age=600,
        env={"NUKEWORKS_OPERATOR_DATABASES": str(tmp_path / "control" / "nukeworks.sqlite")},
    ).start()
    yield srv
    srv.stop()


@pytest.fixture
def control(tmp_path, make_database) -> Path:
    path = tmp_path / "control" / "nukeworks.sqlite"
    path.parent.mkdir()
    make_database(name="Control", users=[("boss", PASSWORD, True)], path=path)
    set_password(path, "boss", PASSWORD)
    return path


@pytest.fixture
def site(server, make_database) -> Path:
    path = server.root / "databases" / "site" / "nukeworks.sqlite"
    path.parent.mkdir(parents=True)
    make_database(name="Site", companies=["Acme"], users=[("boss", PASSWORD, True)], path=path)
    set_password(path, "boss", PASSWORD)
    return path


def _holders(server: GunicornServer, path: Path) -> set[int]:
    return {pid for pid in server.worker_pids() if open_files(pid, str(path))}


def _on_site(server: GunicornServer, control: Path, site: Path) -> Browser:
    browser = Browser(server.base)
    browser.select(control)
    status, body = browser.select(site)
    assert status == 200 and "Site" in body
    return browser


def test_archive_closes_the_file_in_every_worker_and_sessions_fall_back(server, control, site):
    operator = Browser(server.base)
    operator.select(control)
    assert "Log out boss" in operator.sign_in("boss", PASSWORD)[1]
    operator.select(site)
    assert "Log out boss" in operator.sign_in("boss", PASSWORD)[1]

    # Sessions on the site in both workers, until each worker holds the file open.
    users = [_on_site(server, control, site) for _ in range(4)]
    wanted = set(server.worker_pids())
    deadline = time.monotonic() + 30

    def hammer(browser: Browser) -> None:
        while time.monotonic() < deadline and _holders(server, site) != wanted:
            browser.get("/login/")

    threads = [threading.Thread(target=hammer, args=(b,)) for b in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _holders(server, site) == wanted, "the load did not reach both workers"

    status, page = operator.get("/database/archive")
    assert status == 200 and 'id="archive-form"' in page
    status, page = operator.post("/database/archive")
    assert status == 200 and "was archived to" in page and "You now work on Control" in page
    assert not site.parent.exists()
    [moved] = list((server.root / "databases" / ".archive").iterdir())
    archived = moved / "nukeworks.sqlite"
    assert archived.is_file()
    # No worker keeps the archived file (nor its old name) open.
    wait_for(lambda: not _holders(server, moved) and not _holders(server, site.parent))
    assert not _holders(server, moved) and not _holders(server, site.parent)
    # Every session falls back to Control with the banner, whichever worker answers.
    for browser in users:
        status, body = browser.get("/login/")
        assert status == 200
        assert "Your selected database could not be opened. Reverted to Control." in body
    # Not listed, not selectable.
    visitor = Browser(server.base)
    status, body = visitor.get("/select-db")
    assert "Site" not in body
    status, body = visitor.select(archived)
    assert "This database is archived" in body
