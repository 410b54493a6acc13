"""Debian's chromium driven by Playwright: launching it, screenshots, width and axe checks.

Shared by the browser tests. Chromium comes from Debian's package (`make test` installs it
with apt when missing; never a downloaded browser); axe-core comes from the npm registry into
tests/js/node_modules (`make test` runs `npm ci` there) and is injected into each page by the
test, never served by the application.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).resolve().parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# The widths every page is checked at: a laptop and a phone.
WIDTHS = {"laptop": 1280, "phone": 390}
# axe impacts that fail a page (only "minor" is tolerated).
FAILING_IMPACTS = ("critical", "serious", "moderate")

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (`make test` installs it with apt when root)",
)


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[object]:
    """Yield a Playwright page of a fresh chromium at `width` x `height` CSS pixels."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as tests/artifacts/<name>.png (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def overflow(page) -> int:
    """Return how many CSS pixels the page is wider than its viewport (0: it fits)."""
    return int(
        page.evaluate(
            "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
            " - window.innerWidth"
        )
    )


def axe_violations(page) -> list[str]:
    """Run axe-core on the page; return its critical, serious and moderate violations."""
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE}): `make test` installs it (npm ci in tests/js)")
    # Evaluated through the DevTools protocol, not a <script>: the page's CSP stays on.
    page.evaluate(AXE.read_text() + "\n;0")
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at "
        + ", ".join(" ".join(node["target"]) for node in v["nodes"][:3])
        for v in results["violations"]
        if v["impact"] in FAILING_IMPACTS
    ]
