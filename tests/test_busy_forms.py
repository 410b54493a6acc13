"""Long work shows progress: forms with data-busy (static/js/busy.js) disable their buttons.

The pages that start a snapshot, a restore, a copy, an archive, a new database, an import or
export or a full check carry data-busy on those forms and include busy.js and busy.css; in a
real browser (Debian's chromium, as tests/test_browser_selector.py) submitting the snapshot
form disables its button and shows the indicator at once.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from snapshots import service
from tests import browser
from tests.copy_helpers import ADMIN, OPERATOR, signed_in
from tests.helpers import select, sign_in
from tests.live import GunicornServer

TEMPLATES = Path(settings.BASE_DIR) / "templates"
BUSY_JS = "/static/js/busy.js"
BUSY_CSS = "/static/css/busy.css"
FORM = re.compile(r"<form\b[^>]*>", re.S)


def _forms(html: str) -> list[str]:
    return [tag for tag in FORM.findall(html) if 'method="post"' in tag and "logout" not in tag]


@pytest.fixture
def default(make_database) -> Path:
    return make_database(name="Default", label="default", users=[OPERATOR])


@pytest.fixture
def site(make_database) -> Path:
    return make_database(name="Site", users=[ADMIN], label="site")


@pytest.fixture
def operator(default, site):
    client = signed_in(default, OPERATOR)
    assert select(client, site).status_code == 302
    assert sign_in(client, ADMIN[0], ADMIN[1]).status_code == 302
    return client


@pytest.mark.parametrize("folder", ["snapshots", "bundles", "provisioning", "inspection"], ids=str)
def test_every_post_form_of_the_long_work_templates_carries_data_busy(folder):
    for template in sorted((TEMPLATES / folder).glob("*.html")):
        for tag in _forms(template.read_text()):
            assert re.search(r'data-busy="[^"]+"', tag), f"{template.name}: {tag}"


def test_the_pages_of_long_work_carry_busy_forms_and_the_script(operator, site):
    snapshot = service.create_snapshot(str(site), note="first")
    pages = {
        "/snapshots/": ["Creating snapshot…"],
        f"/snapshots/{snapshot.name}/restore": ["Restoring snapshot…"],
        f"/snapshots/{snapshot.name}/delete": ["Deleting snapshot…"],
        "/bundles/": ["Preparing the bundle…", "Uploading and checking the bundle…"],
        "/database/": ["Queueing the full check…"],
        "/database/duplicate": ["Copying the database"],
        f"/database/snapshots/{snapshot.name}/restore-as-new": ["Checking the snapshot"],
        "/database/archive": ["Archiving…"],
        "/select-db/new": ["Queueing the new database…"],
    }
    for url, texts in pages.items():
        response = operator.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert BUSY_JS in html and BUSY_CSS in html, url
        assert "defer" in html.split(BUSY_JS)[0].rsplit("<script", 1)[1], url
        for text in texts:
            assert f'data-busy="{text}' in html, (url, text)
        for tag in _forms(html):
            if "select-db" in tag and "new" not in tag:
                continue  # the header's database switch, not long work
            assert "data-busy=" in tag, (url, tag)


def test_busy_script_and_style_are_served_locally():
    root = Path(settings.BASE_DIR) / "static"
    script = (root / "js" / "busy.js").read_text()
    style = (root / "css" / "busy.css").read_text()
    assert "data-busy" in script and "disabled = true" in script
    assert "@keyframes" in style and ".busy-spinner" in style
    assert "http" not in script and "http" not in style.replace("https://", "")


# -- in a real browser ------------------------------------------------------------------------

needs_chromium = browser.needs_chromium


@pytest.fixture
def live_site(make_database) -> Path:
    return make_database(name="Busy Site", users=[ADMIN], label="busy")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    server = GunicornServer(
        tmp_path, workers=1, settings_module="tests.settings", env={"NUKEWORKS_LIVE_SERVER": "1"}
    ).start()
    yield server.base
    server.stop()


@pytest.fixture
def browser_page(server: str) -> Iterator[object]:
    with browser.chromium() as page:
        page.set_default_timeout(8_000)
        yield page


RECORD = """() => {
  const form = document.querySelector('#snapshot-create-form');
  const record = () => {
    const button = form.querySelector('button[type=submit]');
    const status = form.querySelector('.busy-status');
    const spinner = form.querySelector('.busy-spinner');
    sessionStorage.setItem('busy-seen', JSON.stringify({
      disabled: button.disabled,
      busy: form.getAttribute('aria-busy'),
      text: status ? status.textContent : '',
      role: status ? status.getAttribute('role') : '',
      animation: spinner ? getComputedStyle(spinner).animationName : '',
      width: spinner ? spinner.getBoundingClientRect().width : 0,
    }));
  };
  new MutationObserver(record).observe(form, {subtree: true, attributes: true, childList: true});
}"""


@needs_chromium
def test_submitting_the_snapshot_form_disables_its_button_and_shows_progress(
    live_site, server, browser_page
):
    page = browser_page
    page.goto(server + "/snapshots/")
    page.wait_for_url("**/select-db**")
    page.fill("#id_path", str(live_site))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/login/**")
    page.fill("#id_username", ADMIN[0])
    page.fill("#id_password", ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server + "/snapshots/")

    # The request is held half a second (the snapshot itself is quick); what the form looks
    # like meanwhile is recorded in sessionStorage, which outlives the page's navigation.
    page.route("**/snapshots/create", lambda route: (time.sleep(0.5), route.continue_()))
    page.evaluate(RECORD)
    page.fill("#id_note", "from the browser")
    page.get_by_role("button", name="Create snapshot").click()
    page.wait_for_url(server + "/snapshots/")
    page.wait_for_selector("text=from the browser")

    seen = json.loads(page.evaluate("sessionStorage.getItem('busy-seen') || '{}'"))
    assert seen.get("disabled") is True, seen
    assert seen["role"] == "status"
    assert "Creating snapshot…" in seen["text"]
    assert seen["animation"] == "busy-spin" and seen["width"] > 0
    assert seen["busy"] == "true"  # aria-busy on the form
