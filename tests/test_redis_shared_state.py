"""Two real app servers sharing one real Redis (REDIS_URL): any request may land on either.

Servers A and B run gunicorn with the project's settings, each with its own instance folder
and session folder (two machines), the same databases folder and the same REDIS_URL. A
browser's cookie jar is shared between them, as behind a round-robin balancer without sticky
sessions. Every server pair gets its own NUKEWORKS_REDIS_PREFIX, so tests never see each
other's keys.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.helpers import add_rows, backup_copy, wait_for
from tests.live import REPO, Browser, GunicornServer, open_files, set_password

PASSWORD = "pw-redis-live-123"


class Cluster:
    """Servers A and B on one Redis, and the operator database both know."""

    def __init__(self, root: Path, url: str, template: Path) -> None:
        self.root = root
        self.url = url
        self.prefix = f"t{secrets.token_hex(4)}"
        self.control = root / "control" / "nukeworks.sqlite"
        self.control.parent.mkdir(parents=True)
        backup_copy(template, self.control)
        add_rows(self.control, name="Control", users=[("boss", PASSWORD, True)])
        set_password(self.control, "boss", PASSWORD)
        env = {
            "REDIS_URL": url,
            "NUKEWORKS_REDIS_PREFIX": self.prefix,
            "NUKEWORKS_OPERATOR_DATABASES": str(self.control),
            "NUKEWORKS_DATABASES_DIR": str(root / "databases"),
            "LOGIN_RATE_LIMIT_USERNAME": "3",
            # Persistent connections: a worker keeps the file open until a dispose closes it.
            "DB_CONN_MAX_AGE": "600",
        }
        self.a = GunicornServer(
            root / "a", workers=1, threads=2, env={**env, "NUKEWORKS_SERVER_NAME": "alpha"}
        )
        self.b = GunicornServer(
            root / "b", workers=1, threads=2, env={**env, "NUKEWORKS_SERVER_NAME": "beta"}
        )

    def start(self) -> Cluster:
        self.a.start()
        self.b.start()
        return self

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()
        client = redis.Redis.from_url(self.url)
        keys = list(client.scan_iter(match=f"{self.prefix}:*"))
        if keys:
            client.delete(*keys)

    def browsers(self) -> tuple[Browser, Browser]:
        """One browser (one cookie jar) talking to A and to B."""
        on_a = Browser(self.a.base)
        on_b = Browser(self.b.base)
        on_b.jar, on_b.opener = on_a.jar, on_a.opener
        return on_a, on_b

    def operator(self) -> Browser:
        """An operator signed in to the Control database, on A."""
        browser = Browser(self.a.base)
        browser.select(self.control)
        status, body = browser.sign_in("boss", PASSWORD)
        assert status == 200 and "Log out boss" in body
        return browser


@pytest.fixture(scope="module")
def cluster(redis_server, template_database, tmp_path_factory, django_db_blocker):
    """Servers A and B (one worker each, persistent connections) on one Redis."""
    with django_db_blocker.unblock():
        pair = Cluster(
            tmp_path_factory.mktemp("redis-cluster"), redis_server.extra["url"], template_database
        )
    try:
        yield pair.start()
    finally:
        pair.stop()


def _session_files(cluster: Cluster) -> list[Path]:
    return [p for srv in (cluster.a, cluster.b) for p in (srv.root / "sessions").iterdir()]


def test_one_session_moves_between_the_two_servers(cluster, make_database):
    plant = make_database(name="Plant A", companies=["Acme"], users=[("ann", PASSWORD, False)])
    set_password(plant, "ann", PASSWORD)
    on_a, on_b = cluster.browsers()

    status, body = on_a.select(plant)
    assert status == 200 and "Plant A" in body and "Sign in" in body
    # On B with the same cookie: still on Plant A, and signs in there.
    status, body = on_b.get("/")
    assert status == 200 and "Plant A" in body
    status, body = on_b.sign_in("ann", PASSWORD)
    assert status == 200 and "Log out ann" in body
    # A sees the sign-in made on B; a company created on A is read on B.
    status, body = on_a.get("/companies/")
    assert status == 200 and "Acme" in body and "Log out ann" in body
    status, body = on_a.post("/companies/new/", {"name": "Made on A", "country": "X"})
    assert status == 200 and "Log out ann" in body
    status, body = on_b.get("/companies/")
    assert status == 200 and "Made on A" in body and "Log out ann" in body
    # The sessions live in Redis: neither server wrote a session file.
    assert _session_files(cluster) == []


def test_sign_in_failures_count_on_both_servers(cluster, make_database):
    plant = make_database(name="Plant L", users=[("lou", PASSWORD, False)])
    set_password(plant, "lou", PASSWORD)
    on_a, on_b = cluster.browsers()
    on_a.select(plant)
    # LOGIN_RATE_LIMIT_USERNAME=3: two failures on A and one on B reach it.
    for browser in (on_a, on_b, on_a):
        status, body = browser.sign_in("lou", "wrong-password")
        assert status == 200 and "Too many failed" not in body
    # Refused on both servers now, even with the right password.
    for browser in (on_b, on_a):
        status, body = browser.sign_in("lou", PASSWORD)
        assert status == 429 and "Too many failed sign-in attempts" in body
        assert "Log out lou" not in body


def test_recent_paths_remembered_on_one_server_show_on_the_other(cluster, make_database):
    plant = make_database(name="Plant R")
    on_a, _ = cluster.browsers()
    assert on_a.select(plant)[0] == 200
    # Another visitor, on B only (the testing environment shows the machine's history).
    status, page = Browser(cluster.b.base).get("/select-db")
    assert status == 200
    recent = page[page.index("<legend>Recent</legend>") :]
    assert f'<input type="radio" name="choice" value="{plant}"' in recent[: recent.index("</ul>")]
    for srv in (cluster.a, cluster.b):
        assert not (srv.root / "instance" / "db_selector.json").exists()


def _holds(server: GunicornServer, path: Path) -> bool:
    return any(open_files(pid, path) for pid in server.worker_pids())


def _engines_page(operator: Browser, path: Path) -> tuple[set[str], str]:
    """Return the servers whose workers the page lists, and the engine row of `path`."""
    status, page = operator.get("/admin/engines/")
    assert status == 200
    servers = set(re.findall(r'<tr class="worker" data-pid="\d+" data-host="([^"]+)"', page))
    marker = f'data-path="{path}"'
    if marker not in page:
        return servers, ""
    row = page[page.index(marker) :]
    return servers, row[: row.index("</tr>")]


def test_dispose_on_one_server_closes_the_file_on_the_other(cluster, make_database):
    plant = make_database(name="Shared plant", users=[("sam", PASSWORD, False)])
    set_password(plant, "sam", PASSWORD)
    operator = cluster.operator()
    on_a, on_b = cluster.browsers()
    assert on_a.select(plant)[0] == 200
    # Signed in on B, reading on A: both servers' workers have the file open.
    assert "Log out sam" in on_b.sign_in("sam", PASSWORD)[1]
    assert "Log out sam" in on_a.get("/companies/")[1]
    assert _holds(cluster.a, plant) and _holds(cluster.b, plant)

    # A's engines page lists the workers of both servers, and B's use of the file.
    def both_listed() -> bool:
        servers, row = _engines_page(operator, plant)
        return servers == {"alpha", "beta"} and 'data-host="beta"' in row

    assert wait_for(both_listed, timeout=15), _engines_page(operator, plant)
    assert _holds(cluster.b, plant), "B let the file go before any dispose"
    # One session (the browser's, in Redis) is on it.
    assert '<td class="sessions">1</td>' in _engines_page(operator, plant)[1]
    status, page = operator.post("/admin/engines/dispose", {"path": str(plant)})
    assert status == 200 and "Disposed Shared plant" in page
    # B's janitor applies it within a tick: no worker of either server holds the file.
    assert wait_for(lambda: not _holds(cluster.a, plant) and not _holds(cluster.b, plant))
    # The session on it simply carries on, on either server.
    status, body = on_b.get("/companies/")
    assert status == 200 and "Log out sam" in body


class QueueWorker:
    """`manage.py run_huey` on a third machine: its own instance folder, the same Redis."""

    def __init__(self, cluster: Cluster) -> None:
        self.root = cluster.root / "worker"
        self.instance = self.root / "instance"
        (self.root / "sessions").mkdir(parents=True)
        self.log = self.root / "huey.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
            "NUKEWORKS_INSTANCE_DIR": str(self.instance),
            "NUKEWORKS_DATABASES_DIR": str(cluster.root / "databases"),
            "NUKEWORKS_DEFAULT_DB": str(self.root / "default.sqlite"),
            "SESSION_FILE_PATH": str(self.root / "sessions"),
            "SECRET_KEY": "worker-secret-key-for-tests-only-0123456789abcdef",
            "NUKEWORKS_ENV": "testing",
            "DBSELECT_REGISTER_SCANNED": "false",
            "REDIS_URL": cluster.url,
            "NUKEWORKS_REDIS_PREFIX": cluster.prefix,
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> QueueWorker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "run_huey"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        announced = self.instance / "provisioning" / "workers"
        started = wait_for(
            lambda: any(announced.glob("*.json")) or self.proc.poll() is not None, timeout=60
        )
        assert started and self.proc.poll() is None, self.log.read_text()[-2000:]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def test_a_job_queued_on_one_server_runs_in_a_worker_elsewhere(cluster):
    worker = QueueWorker(cluster).start()
    try:
        operator = cluster.operator()
        # A's page knows the worker of the third machine is there (its key in Redis).
        status, page = operator.get("/select-db/new")
        assert status == 200 and "No queue worker is running" not in page
        status, page = operator.post(
            "/select-db/new",
            {
                "label": "queued-plant",
                "display_name": "Queued plant",
                "seed": "empty",
                "admin": "new",
                "admin_username": "qadmin",
                "admin_password": "Queue-admin-pw-1",
                "admin_password2": "Queue-admin-pw-1",
            },
        )
        assert status == 200 and "queued to be built" in page

        def state() -> str:
            return json.loads(
                Browser(cluster.b.base).get("/select-db/preparing/queued-plant/status")[1]
            )["state"]

        assert wait_for(lambda: state() == "ready", timeout=60), (
            state(),
            worker.log.read_text()[-2000:],
        )
    finally:
        worker.stop()
    # Built by the worker on the third machine: B serves it, and its first admin signs in.
    path = cluster.root / "databases" / "queued-plant" / "nukeworks.sqlite"
    browser = Browser(cluster.b.base)
    assert browser.select(path)[0] == 200
    status, body = browser.sign_in("qadmin", "Queue-admin-pw-1")
    assert status == 200 and "Log out qadmin" in body and "Queued plant" in body
