"""/api/docs/ in a real browser (Debian's chromium): Swagger UI from local files under the CSP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.live import GunicornServer

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (`make test` installs it with apt when root)",
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    live = GunicornServer(tmp_path, workers=1, settings_module="tests.settings").start()
    yield live.base
    live.stop()


def test_swagger_ui_renders_every_operation_without_a_csp_violation_or_a_cdn(server):
    from playwright.sync_api import sync_playwright

    violations: list[str] = []
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.on(
                "console",
                lambda m: (
                    violations.append(m.text) if "Content Security Policy" in m.text else None
                ),
            )
            page.on(
                "request",
                lambda r: outside.append(r.url) if not r.url.startswith(server) else None,
            )
            page.goto(server + "/api/docs/")
            page.wait_for_selector(".opblock-summary-path", timeout=15_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
        finally:
            browser.close()
    joined = " ".join(paths)
    assert "/api/v1/databases/{db}/companies/" in joined.replace("\u200b", "")
    assert "/api/v1/databases/{db}/auth/token" in joined.replace("\u200b", "")
    assert violations == []
    assert outside == []
