"""The real queue worker: `manage.py run_huey` as a process of its own, killed and restarted.

The worker runs the project's own settings with its folders pointed at the test's through the
environment variables an operator would set (as tests/live.py starts gunicorn); it shares the
test's instance folder, so it consumes the queue file this process writes. A test-only
variable, NUKEWORKS_PROVISIONING_STEP_DELAY, makes each build step sleep so that the worker
can be killed half-way.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.test import Client
from huey.contrib.djhuey import HUEY

from bundles import newdb
from dbselect.conf import get_config
from provisioning import progress, service, worker
from tests.helpers import wait_for
from tests.live import REPO, GunicornServer
from tests.test_provisioning import assert_holds_the_starter_package, settings_of

ADMIN_PASSWORD = "Very-long-admin-pw-1"


class Consumer:
    """`manage.py run_huey` in its own process group, on the test's folders."""

    def __init__(self, root: Path, *, step_delay: float = 0.0) -> None:
        self.root = root
        self.log = root / f"huey-{time.monotonic_ns()}.log"
        (root / "sessions").mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
            # The test process's own instance folder: the same queue file (instance/huey.sqlite)
            # and the same place where workers announce themselves.
            "NUKEWORKS_INSTANCE_DIR": str(settings.INSTANCE_DIR),
            "NUKEWORKS_DATABASES_DIR": str(get_config()["DATABASES_DIR"]),
            "NUKEWORKS_DEFAULT_DB": str(root / "default.sqlite"),
            "SESSION_FILE_PATH": str(root / "sessions"),
            "SECRET_KEY": "worker-secret-key-for-tests-only-0123456789abcdef",
            "NUKEWORKS_ENV": "testing",
            "DBSELECT_REGISTER_SCANNED": "false",
            service.STEP_DELAY_ENV: str(step_delay),
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> Consumer:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "run_huey"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not wait_for(lambda: worker.running() or self.proc.poll() is not None, timeout=60):
            self.kill()
            raise RuntimeError(f"the worker did not start: {self.output()[-2000:]}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"the worker exited: {self.output()[-2000:]}")
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9, as a crash or the OOM killer would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop gracefully (SIGINT: the job in progress ends first), as `make run` does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def consumers(tmp_path):
    """Start workers with consumers.start(...); every one still running is killed at the end."""
    started: list[Consumer] = []

    class Factory:
        def start(self, **kwargs: float) -> Consumer:
            consumer = Consumer(tmp_path, **kwargs)
            started.append(consumer)
            return consumer.start()

    HUEY.flush()
    yield Factory()
    for consumer in started:
        consumer.kill()
    HUEY.flush()


def request(label: str) -> service.Job:
    return service.request_build(
        label,
        seed="starter@1",
        admin_username="boss",
        admin_password_hash=make_password(ADMIN_PASSWORD),
        requested_by="tester",
        via="test",
    )


def databases_dir() -> Path:
    return Path(get_config()["DATABASES_DIR"])


def test_a_worker_killed_midway_leaves_no_served_file_and_a_retry_completes(consumers):
    request("killed")
    folder = databases_dir() / "killed"
    path = folder / "nukeworks.sqlite"
    slow = consumers.start(step_delay=60)

    def midway() -> bool:
        current = progress.status("killed")
        return current.state == "building" and current.done > 0

    assert wait_for(midway, timeout=60), (progress.status("killed"), slow.output()[-2000:])
    slow.kill()

    # Nothing is served: no file at the database's path, the marker is not "ready".
    assert not path.exists()
    assert wait_for(lambda: progress.status("killed").state == "interrupted", timeout=10)
    chosen = Client().post("/select-db", {"choice": str(path)})
    assert chosen.status_code == 302 and chosen["Location"] == "/select-db/preparing/killed"
    page = Client().get("/select-db").content.decode()
    assert "preparation interrupted" in page
    api = Client().get("/api/v1/databases/killed/companies/")
    assert api.status_code == 409
    assert api.json()["error"]["detail"]["progress"]["state"] == "interrupted"
    # The half-built file is left under its temporary name, and refused should anyone type it.
    half = newdb.temp_path_for(path)
    assert half.exists()
    typed = Client().post("/select-db", {"path": str(half)})
    assert typed.status_code == 400

    # A retry completes, with a worker that is not slowed down.
    service.retry("killed", requested_by="tester", via="test")
    fast = consumers.start()
    assert wait_for(lambda: progress.status("killed").state == "ready", timeout=60), (
        progress.status("killed"),
        fast.output()[-2000:],
    )
    fast.stop()
    assert_holds_the_starter_package(path)
    assert settings_of(path)["seed_status"] == "ready"
    assert not half.exists()
    assert not (folder / ".preparing.json").exists()


def test_a_job_queued_while_no_worker_runs_is_done_once_one_starts(consumers):
    # A worker that ran and stopped (a restart of the server) ...
    consumers.start().stop()
    assert not worker.running()
    # ... a job queued meanwhile waits in the queue's file ...
    job = request("later")
    time.sleep(1.5)
    assert progress.status("later").state == "queued"
    assert HUEY.pending_count() == 1
    # ... and the next worker builds it.
    again = consumers.start()
    assert wait_for(lambda: progress.status("later").state == "ready", timeout=60), again.output()[
        -2000:
    ]
    again.stop()
    assert job.job in again.output()
    assert_holds_the_starter_package(databases_dir() / "later" / "nukeworks.sqlite")


def test_createdb_waits_for_the_running_worker(consumers):
    running = consumers.start()
    out, err = io.StringIO(), io.StringIO()
    call_command("createdb", "waited", seed="starter@1", stdout=out, stderr=err)
    assert "building here" not in err.getvalue()
    assert "Created database 'Waited'" in out.getvalue()
    running.stop()
    assert "Executing provisioning.tasks.build_database" in running.output()
    assert_holds_the_starter_package(databases_dir() / "waited" / "nukeworks.sqlite")


# --- the progress page in a real browser ----------------------------------------------------


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (`make test` installs it with apt when root)",
)
def test_the_progress_page_follows_the_build_and_selects_the_database(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from tests.browser import CHROMIUM_ARGS

    job = service.request_build("watched", seed="starter@1", via="test", enqueue=False)
    folder = databases_dir() / "watched"
    server = GunicornServer(
        tmp_path, workers=1, settings_module="tests.settings", env={"NUKEWORKS_LIVE_SERVER": "1"}
    ).start()
    console: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.on("console", lambda message: console.append(message.text))
            # Selecting it in the selector leads to its progress page.
            page.goto(server.base + "/select-db")
            page.check(f"input[value='{folder / 'nukeworks.sqlite'}']")
            page.click("#select-form button[type=submit]")
            page.wait_for_url("**/select-db/preparing/watched")
            assert page.inner_text("#preparing-state") == "queued"
            # The page follows the marker by itself ...
            with progress.builder_lock(folder):  # a builder at work
                progress.write(folder, state="building", job=job.job, done=30, total=60)
                expect(page.locator("#preparing-count")).to_have_text("30 / 60")
                expect(page.locator("#preparing-state")).to_have_text("building")
                assert page.get_attribute("#preparing-bar", "value") == "50"
            # ... and, once the database is ready, selects it (anonymous: the sign-in comes next).
            # (Django refuses to run inside Playwright's event loop: the build runs in a thread.)
            builder = threading.Thread(target=service.run, args=("watched", job.job))
            builder.start()
            builder.join(60)
            page.wait_for_url("**/login/**")
            assert "Now working on Watched" in page.content()
            browser.close()
    finally:
        server.stop()
    assert [m for m in console if "Content Security Policy" in m or "Refused" in m] == []
