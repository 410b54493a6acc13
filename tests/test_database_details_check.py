"""The details page (/database/): what is inside the file, and the full check as a job of the
real queue worker (`manage.py run_huey`), its progress and its result."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from django.test import Client
from huey.contrib.djhuey import HUEY

from inspection import jobs, service
from tests.copy_helpers import ADMIN, CLERK, audit, signed_in
from tests.helpers import select, wait_for
from tests.live import GunicornServer
from tests.test_provisioning_worker import Consumer


@pytest.fixture(autouse=True)
def empty_queue():
    HUEY.flush()
    yield
    HUEY.flush()


@pytest.fixture
def site(make_database) -> Path:
    return make_database(
        name="Site", companies=["Acme", "Bolt"], users=[ADMIN, CLERK], label="site"
    )


@pytest.fixture
def queue_worker(tmp_path):
    """Start the real worker with queue_worker(); it is killed at the end of the test."""
    started: list[Consumer] = []

    def start() -> Consumer:
        consumer = Consumer(tmp_path)
        started.append(consumer)
        return consumer.start()

    yield start
    for consumer in started:
        consumer.kill()


def status_of(client: Client) -> dict:
    response = client.get("/database/check/status")
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    return response.json()


def test_admins_see_what_is_inside_the_file(site):
    client = signed_in(site, ADMIN)
    page = client.get("/database/")
    assert page.status_code == 200
    html = page.content.decode()
    inspection = page.context["inspection"]
    assert inspection.table("companies_company").rows == 2
    assert inspection.table("accounts_user").rows == 2
    assert not inspection.incomplete and inspection.sizes_source == "dbstat"
    assert (
        '<tr data-table="companies_company"><td><code>companies_company</code></td>'
        '<td class="rows">2</td><td>4.0\xa0KB' in html
    )
    assert '<td id="db-journal-mode">wal</td>' in html
    assert f"{inspection.page_count} pages of {inspection.page_size} bytes" in html
    assert 'id="db-freelist"' in html
    assert '<p id="db-triggers" class="muted">None.</p>' in html
    assert "manage.py dbinspect site --tables --triggers" in html
    # The full check: never run from here yet, a button, the script that follows it.
    assert page.context["full_check"] is None
    assert 'id="run-full-check"' in html and 'action="/database/check"' in html
    assert '<script src="/static/inspection/check.js"></script>' in html
    assert "<script>" not in html  # CSP: no inline script


def test_others_get_403_and_a_refused_check_is_audited(site):
    clerk = signed_in(site, CLERK)
    assert clerk.get("/database/").status_code == 403
    assert clerk.get("/database/check/status").status_code == 403
    assert clerk.post("/database/check").status_code == 403
    anonymous = Client()
    select(anonymous, site)
    assert anonymous.get("/database/check/status").status_code == 403
    assert anonymous.post("/database/check").status_code == 403
    assert HUEY.pending_count() == 0
    assert jobs.read(str(site)) is None
    assert [(o, u) for o, u, _ in audit(site, "database.check")] == [
        ("denied", "clerk"),
        ("denied", ""),
    ]
    # Without a database, the selector first.
    assert Client().get("/database/check/status")["Location"].startswith("/select-db")


def test_the_full_check_is_queued_never_run_in_the_request(site):
    client = signed_in(site, ADMIN)
    assert status_of(client) == {"state": "none", "percent": 0}

    response = client.post("/database/check")

    assert response.status_code == 302 and response["Location"] == "/database/#full-check"
    assert HUEY.pending_count() == 1
    status = status_of(client)
    assert status["state"] == "queued" and status["percent"] == 0
    html = client.get("/database/").content.decode()
    assert 'data-state="queued"' in html and '<strong id="check-state">queued</strong>' in html
    assert 'id="no-worker"' in html  # no worker runs in this test
    assert 'id="run-full-check"' not in html
    # Asking again while it waits queues nothing more.
    again = client.post("/database/check", follow=True)
    assert "already under way" in again.content.decode()
    assert HUEY.pending_count() == 1
    [(outcome, username, detail)] = audit(site, "database.check")
    assert (outcome, username) == ("queued", "boss") and status["job"] in detail
    # Nothing was read or written to the database but that entry: the status is in instance/.
    assert jobs.status_file(str(site)).is_file()
    assert json.loads(jobs.status_file(str(site)).read_text())["path"] == str(site)


def test_the_full_check_runs_in_the_real_worker_and_its_result_stays(site, queue_worker):
    worker = queue_worker()
    client = signed_in(site, ADMIN)
    client.post("/database/check")

    assert wait_for(lambda: status_of(client)["state"] == "done", timeout=60), (
        status_of(client),
        worker.output()[-2000:],
    )
    worker.stop()
    assert "Executing inspection.tasks.full_check" in worker.output()
    status = status_of(client)
    assert status["ok"] is True and status["percent"] == 100
    assert status["summary"].startswith("integrity_check: ok; attachments: 0 files")
    # The result stays on the page after the job (and its worker) ended.
    page = client.get("/database/")
    html = page.content.decode()
    assert '<div id="check-result" data-ok="true">' in html
    assert "No problems found</strong> by the full check of" in html and "(asked by boss)" in html
    assert 'id="run-full-check"' in html and "Run the full check again" in html
    result = page.context["full_check"].result
    assert result["file"]["mode"] == "integrity_check" and result["file"]["ok"]
    # Audited: queued by the page, then its outcome, by the worker, in the database.
    entries = audit(site, "database.check")
    assert [(o, u) for o, u, _ in entries] == [("queued", "boss"), ("success", "boss")]
    assert "via details page, job " + status["job"] in entries[1][2]


def test_problems_found_by_the_worker_are_listed_on_the_page(site, queue_worker):
    conn = sqlite3.connect(site)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute(
        "INSERT INTO companies_project (name, status, notes, created_at, updated_at, company_id)"
        " VALUES ('Orphan', 'planned', '', '2024-01-01', '2024-01-01', 999)"
    )
    conn.commit()
    orphan = conn.execute("SELECT id FROM companies_project").fetchone()[0]
    conn.close()
    worker = queue_worker()
    client = signed_in(site, ADMIN)
    client.post("/database/check")

    assert wait_for(lambda: status_of(client)["state"] == "done", timeout=60), worker.output()[
        -2000:
    ]
    assert status_of(client)["ok"] is False
    html = client.get("/database/").content.decode()
    assert '<div id="check-result" data-ok="false">' in html
    assert "Problems found</strong>" in html
    assert "1 row with a foreign key pointing at no row" in html
    assert (
        f"<code>companies_project row {orphan}: companies_project.company_id -&gt; "
        "companies_company (no such row)</code>" in html
    )
    assert [o for o, _, _ in audit(site, "database.check")] == ["queued", "failure"]


def test_a_check_whose_worker_died_reads_as_interrupted(site):
    jobs._write(
        jobs.CheckStatus(
            path=str(site),
            job="dead",
            state=jobs.RUNNING,
            requested_at=time.time(),
            done=5,
            total=10,
        )
    )
    client = signed_in(site, ADMIN)
    assert status_of(client)["state"] == "interrupted"
    html = client.get("/database/").content.decode()
    assert "The last check did not finish</strong> (interrupted)" in html
    assert 'id="run-full-check"' in html
    # Running it again replaces it.
    client.post("/database/check")
    assert status_of(client)["state"] == "queued" and HUEY.pending_count() == 1


def test_a_superseded_job_does_nothing(site):
    status, created = jobs.start(str(site), requested_by="boss")
    assert created
    assert jobs.run(str(site), "an-older-job") == "superseded"
    assert jobs.read(str(site)).state == "queued"
    assert jobs.run(str(site), status.job) == "done"
    assert jobs.read(str(site)).ok is True


# --- in a real browser: the page follows the job, then shows its result --------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (`make test` installs it with apt when root)",
)
def test_the_page_follows_the_check_and_shows_its_result(site, tmp_path, settings):
    from playwright.sync_api import expect, sync_playwright

    from tests.browser import CHROMIUM_ARGS

    # The server, its queue and the worker share the test's instance folder.
    settings.INSTANCE_DIR = tmp_path / "instance"
    server = GunicornServer(
        tmp_path, workers=1, settings_module="tests.settings", env={"NUKEWORKS_LIVE_SERVER": "1"}
    ).start()
    consumer = Consumer(tmp_path)
    consumer.env["NUKEWORKS_INSTANCE_DIR"] = str(tmp_path / "instance")
    console: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.on("console", lambda message: console.append(message.text))
            page.goto(server.base + "/select-db")
            page.fill("#id_path", str(site))
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url("**/login/**")
            page.fill("#id_username", ADMIN[0])
            page.fill("#id_password", ADMIN[1])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/login/" not in url)
            page.goto(server.base + "/database/")
            rows = page.locator("tr[data-table='companies_company'] td.rows")
            assert rows.inner_text() == "2"
            # Queued while no worker runs: the page shows it waiting ...
            page.click("#run-full-check")
            expect(page.locator("#check-state")).to_have_text("queued")
            assert page.locator("#no-worker").is_visible()
            # ... and once a worker has run it, shows the result by itself.
            consumer.start()
            expect(page.locator("#check-result")).to_have_attribute("data-ok", "true")
            assert "No problems found" in page.inner_text("#full-check")
            browser.close()
    finally:
        consumer.kill()
        server.stop()
    assert [m for m in console if "Content Security Policy" in m or "Refused" in m] == []
    assert [o for o, _, _ in audit(site, "database.check")] == ["queued", "success"]


def test_the_job_writes_its_progress_while_it_runs(site, monkeypatch):
    seen: list[jobs.CheckStatus | None] = []
    real = service.check_database

    def observed(target, **kwargs):
        kwargs["progress"]("file", 50, 100)
        seen.append(jobs.read(str(site)))
        return real(target, **kwargs)

    monkeypatch.setattr(jobs.service, "check_database", observed)
    status, _ = jobs.start(str(site), requested_by="boss")

    assert jobs.run(str(site), status.job) == "done"

    [during] = seen
    assert (during.state, during.phase, during.percent) == ("running", "file", 50)
    assert during.as_json()["percent"] == 50
    done = jobs.read(str(site))
    assert done.state == "done" and done.ok is True and done.percent == 100


def test_the_page_never_reads_past_its_time_budget(site, monkeypatch):
    from inspection import views

    monkeypatch.setattr(views, "PAGE_TIME_BUDGET", 0.0)
    client = signed_in(site, ADMIN)
    page = client.get("/database/")
    html = page.content.decode()
    assert page.context["inspection"].incomplete
    assert '<td class="rows">—</td>' in html and "not counted within the time budget" in html
    assert "`manage.py dbinspect` computes them all" in html
    assert '<td id="db-journal-mode">wal</td>' in html  # what costs nothing is still shown
