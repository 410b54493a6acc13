"""The selector in a real browser (Debian's chromium driven by Playwright) against gunicorn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import browser
from tests.live import GunicornServer

pytestmark = browser.needs_chromium


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
    with browser.chromium() as page:
        yield page


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
    wider = browser.overflow(page)
    assert wider <= 0, f"the selector is {wider} px wider than the {width} px viewport"
    assert browser.axe_violations(page) == []
    browser.screenshot(page, f"selector-{width}")

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
    browser.screenshot(page, "selector-refused-390")


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
    browser.screenshot(page, "selector-recent-390")
