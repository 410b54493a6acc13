"""The selector in a real browser (Debian's chromium driven by Playwright) against gunicorn."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import GunicornServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (`make test` installs it with apt when root)",
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def harbour(make_database) -> Path:
    """A scanned database; made before the browser starts (Playwright runs an event loop)."""
    return make_database(
        name="Harbour Plant",
        companies=["Tidal Works"],
        users=[("ops", "pw", False)],
        label="harbour",
    )


@pytest.fixture
def browser_page(server: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(15_000)
        yield page
        browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """gunicorn on the test's folders (tmp_path/databases is the scanned folder), test settings.

    The test settings keep the fast password hasher the fixtures' users were made with.
    """
    server = GunicornServer(
        tmp_path,
        workers=1,
        settings_module="tests.settings",
        env={"NUKEWORKS_LIVE_SERVER": "1"},
    ).start()
    yield server.base
    server.stop()


def test_pick_a_database_with_the_browse_widget_then_sign_in(
    harbour, server, browser_page, tmp_path
):
    page = browser_page
    page.goto(server + "/companies/")
    assert page.url.startswith(server + "/select-db")
    assert page.locator("h1").inner_text() == "Select Database"

    page.click("#browse-toggle")
    page.get_by_role("button", name="harbour/").click()
    page.get_by_role("button", name="nukeworks.sqlite").click()
    typed = page.input_value("#id_path")
    assert typed.endswith("/harbour/nukeworks.sqlite")
    page.screenshot(path=str(tmp_path / "selector.png"), full_page=True)

    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/login/**")
    assert "Harbour Plant" in page.inner_text("main")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "pw")
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(server + "/companies/")
    assert "Tidal Works" in page.inner_text("table.list")
    assert "Database: Harbour Plant" in page.inner_text("header")


def test_refused_file_shows_the_reason_in_the_browser(server, browser_page, tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_text("<script>alert('x')</script> not a database")
    page = browser_page
    page.goto(server + "/select-db")
    page.fill("#id_path", str(junk))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_selector(".banner-error")
    banner = page.inner_text(".banner-error")
    assert "The database could not be opened. Reason: The file is not a SQLite database" in banner
    assert page.url == server + "/select-db"
