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
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
AXE = Path(__file__).resolve().parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
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
    assert "Harbour Plant" in page.inner_text("header")


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


@pytest.fixture
def several(harbour, make_old_database, tmp_path) -> Path:
    """Beside harbour: a database needing migration and a file that is no database."""
    make_old_database(label="legacy")
    junk = tmp_path / "databases" / "junk" / "nukeworks.sqlite"
    junk.parent.mkdir(parents=True)
    junk.write_text("not a database")
    return junk


@pytest.mark.parametrize("width", [1280, 390])
def test_the_selector_is_one_list_that_fits_the_screen(several, server, browser_page, width):
    page = browser_page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(server + "/select-db")
    assert page.locator("input[name=choice]:checked").count() == 1
    assert page.locator("#db-list .state-badge").all_inner_texts() == [
        "up to date", "invalid", "needs migration",
    ]  # fmt: skip
    wider = page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - window.innerWidth"
    )
    assert wider <= 0, f"the selector is {wider} px wider than the {width} px viewport"
    if AXE.exists():  # axe-core from the npm registry (tests/js), injected by the test
        # Evaluated through the DevTools protocol: the page's CSP (script-src 'self') stays on.
        page.evaluate(AXE.read_text() + "\n;0")
        results = page.evaluate("async () => await axe.run(document)")
        bad = [v["id"] for v in results["violations"] if v["impact"] != "minor"]
        assert bad == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"selector-{width}.png"), full_page=True)

    # Typing a path selects the typed option; choosing a listed database again leaves the
    # typed path out of the form: the listed one is opened.
    page.fill("#id_path", str(several))
    assert page.is_checked("#choice-typed")
    page.locator("#db-list li", has_text="Harbour Plant").locator("input[type=radio]").check()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/login/**")
    assert "Harbour Plant" in page.inner_text("main")


def test_a_refusal_is_shown_next_to_the_typed_path(several, server, browser_page):
    page = browser_page
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto(server + "/select-db")
    page.fill("#id_path", str(several))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_selector("#path-error")
    error = page.inner_text("#path-error")
    assert str(several) in error and "not a SQLite database" in error
    assert page.is_checked("#choice-typed")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "selector-refused-390.png"), full_page=True)


@pytest.fixture
def gone(make_database) -> Path:
    """A file outside the scanned folder, made before the browser starts."""
    return make_database(name="Gone")


def test_last_used_and_a_missing_recent_file_at_phone_width(harbour, gone, server, browser_page):
    page = browser_page
    page.set_viewport_size({"width": 390, "height": 900})
    for path in (gone, harbour):
        page.goto(server + "/select-db")
        page.fill("#id_path", str(path))
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url("**/login/**")
    gone.unlink()
    page.goto(server + "/select-db")
    assert page.locator(".last-used-badge").count() == 1
    assert page.locator("input[name=choice]:checked").get_attribute("value") == str(harbour)
    missing = page.locator(f'input[name=choice][value="{gone}"]')
    assert missing.is_disabled() and not missing.is_checked()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "selector-recent-390.png"), full_page=True)
