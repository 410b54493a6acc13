"""Two real gunicorn worker processes: the engines page sees both, Dispose reaches both.

Persistent connections (CONN_MAX_AGE=600) make each worker keep the file open after its
requests end, so only a dispose that reaches every worker and thread closes it: proven with
each worker's /proc/<pid>/fd.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.live import Browser, GunicornServer, open_files, set_password


@pytest.fixture
def control_path(tmp_path) -> Path:
    """Where the operator's database ("Control") will be made."""
    return tmp_path / "control" / "nukeworks.sqlite"


@pytest.fixture
def server(tmp_path, control_path):
    """gunicorn with 2 workers x 2 threads and persistent connections, stopped afterwards."""
    srv = GunicornServer(
        tmp_path / "server",
        workers=2,
        threads=2,
        conn_max_age=600,
        env={"NUKEWORKS_OPERATOR_DATABASES": str(control_path)},
    ).start()
    yield srv
    srv.stop()


def _holders(server: GunicornServer, path: str) -> set[int]:
    return {pid for pid in server.worker_pids() if open_files(pid, path)}


def _open_in_every_worker(server: GunicornServer, path: str, timeout: float = 30.0) -> None:
    """Select `path` from several sessions at once until every worker holds it open."""
    deadline = time.monotonic() + timeout
    wanted = set(server.worker_pids())

    def hammer() -> None:
        browser = Browser(server.base)
        while time.monotonic() < deadline and _holders(server, path) != wanted:
            browser.select(path)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _holders(server, path) == wanted, "the load did not reach both workers"


@pytest.fixture
def admin(server, make_database, control_path):
    """An operator: an administrator signed in to the operator database ("Control")."""
    control_path.parent.mkdir()
    control = make_database(
        name="Control", users=[("boss", "pw-boss-123", True)], path=control_path
    )
    set_password(control, "boss", "pw-boss-123")
    browser = Browser(server.base)
    browser.select(control)
    status, body = browser.sign_in("boss", "pw-boss-123")
    assert status == 200 and "Log out boss" in body
    return browser


def _engines_page(admin: Browser, shared: str) -> tuple[set[int], str, set[int]]:
    """Return the workers listed, the row of `shared` and the workers that row names."""
    status, page = admin.get("/admin/engines/")
    assert status == 200
    listed = {int(p) for p in re.findall(r'<tr class="worker" data-pid="(\d+)"', page)}
    if f'data-path="{shared}"' not in page:
        return listed, "", set()
    row = page[page.index(f'data-path="{shared}"') :]
    row = row[: row.index("</tr>")]
    return listed, row, {int(p) for p in re.findall(r'class="worker-use" data-pid="(\d+)"', row)}


def test_engines_page_lists_the_engines_of_both_workers(server, admin, make_database):
    shared = str(make_database(name="Shared plant"))
    _open_in_every_worker(server, shared)
    pids = set(server.worker_pids())
    # The page waits up to ENGINE_REFRESH_WAIT (1 s) for the workers' janitor threads to
    # publish; on a busy machine one may answer later, and a reload then shows it.

    def both_listed() -> bool:
        listed, _, using = _engines_page(admin, shared)
        return listed == using == pids

    wait_for(both_listed, timeout=15)
    listed, row, using = _engines_page(admin, shared)
    assert listed == pids
    assert "Shared plant" in row
    assert using == pids


def test_dispose_in_one_worker_closes_the_file_in_every_worker(server, admin, make_database):
    shared = str(make_database(name="Shared plant"))
    _open_in_every_worker(server, shared)
    status, page = admin.post("/admin/engines/dispose", {"path": shared})
    assert status == 200
    assert "Disposed Shared plant" in page
    wait_for(lambda: not _holders(server, shared))
    assert _holders(server, shared) == set(), "a worker still holds the disposed file open"
    # A session still on it simply re-opens it.
    user = Browser(server.base)
    status, _ = user.select(shared)
    assert status == 200
    assert _holders(server, shared)


def test_non_admin_gets_403_from_a_real_server(server, make_database):
    path = make_database(users=[("clerk", "pw-clerk-123", False)])
    set_password(path, "clerk", "pw-clerk-123")
    browser = Browser(server.base)
    browser.select(path)
    assert browser.get("/admin/engines/")[0] == 403
    browser.sign_in("clerk", "pw-clerk-123")
    assert browser.get("/admin/engines/")[0] == 403
    assert browser.post("/admin/engines/dispose", {"path": str(path)})[0] == 403
