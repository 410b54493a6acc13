"""Every main page in a real browser at a laptop's and a phone's width.

A user's journey through gunicorn and Debian's chromium: the selector, picking a database by
its typed path, signing in, then every page a signed-in operator reaches. At 1280 and 390 CSS
pixels each page must fit its viewport (nothing scrolls sideways) and pass axe-core with no
critical, serious or moderate violation; a full-page screenshot of each is saved under
tests/artifacts/ (git-ignored) for people to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

from dbselect import engines, state
from tests import browser
from tests.live import GunicornServer

pytestmark = browser.needs_chromium

PASSWORD = "pw-journey-123"


@pytest.fixture
def harbour(make_database) -> dict[str, object]:
    """A scanned database with companies, a project and an admin who is an operator."""
    from nukeworks.companies.models import Company, Project

    path = make_database(
        name="Harbour Plant",
        companies=["Tidal Works", "Breakwater Energy"],
        users=[("ops", PASSWORD, True)],
        label="harbour",
    )
    engine = engines.register(str(path))
    with state.override(engine.alias):
        company = Company.objects.get(name="Tidal Works")
        project = Project.objects.create(name="North Pier Unit 1", company=company)
    connections[engine.alias].close()
    return {"path": path, "company": company.pk, "project": project.pk}


@pytest.fixture
def server(tmp_path: Path, harbour) -> Iterator[str]:
    """gunicorn on the test's folders, test settings; the harbour file is an operators' one."""
    server = GunicornServer(
        tmp_path,
        workers=1,
        settings_module="tests.settings",
        env={
            "NUKEWORKS_LIVE_SERVER": "1",
            "NUKEWORKS_OPERATOR_DATABASES": str(harbour["path"]),
        },
    ).start()
    yield server.base
    server.stop()


def _pages(harbour: dict[str, object]) -> dict[str, str]:
    company, project = harbour["company"], harbour["project"]
    return {
        "home": "/",
        "company-list": "/companies/",
        "company-detail": f"/companies/{company}/",
        "company-new": "/companies/new/",
        "company-edit": f"/companies/{company}/edit/",
        "project-list": "/projects/",
        "project-detail": f"/projects/{project}/",
        "project-new": "/projects/new/",
        "snapshots": "/snapshots/",
        "database-details": "/database/",
        "slow-queries": "/database/slow-queries",
        "export-import": "/bundles/",
        "engines": "/admin/engines/",
        "catalog": "/catalog/",
        "new-database": "/select-db/new",
        "django-admin": "/admin/",
    }


def _check(page, name: str, width: int, problems: dict[str, list[str]]) -> None:
    browser.screenshot(page, f"{name}-{width}")
    found = []
    wider = browser.overflow(page)
    if wider > 0:
        found.append(f"{wider} px wider than the {width} px viewport")
    found += browser.axe_violations(page)
    if found:
        problems[name] = found


@pytest.mark.parametrize("width", list(browser.WIDTHS.values()), ids=list(browser.WIDTHS))
def test_every_page_fits_and_passes_axe(server, harbour, width):
    problems: dict[str, list[str]] = {}
    with browser.chromium(width=width) as page:
        page.goto(server + "/companies/")
        assert page.url.startswith(server + "/select-db")
        _check(page, "selector", width, problems)

        page.fill("#id_path", str(harbour["path"]))
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url("**/login/**")
        _check(page, "login", width, problems)

        page.fill("#id_username", "ops")
        page.fill("#id_password", PASSWORD)
        page.press("#id_password", "Enter")
        page.wait_for_url(server + "/companies/")
        assert "Tidal Works" in page.inner_text("main")

        for name, path in _pages(harbour).items():
            response = page.goto(server + path)
            assert response is not None and response.status == 200, (name, path)
            assert "Harbour Plant" in page.inner_text("body"), name
            _check(page, name, width, problems)
    assert problems == {}, "\n".join(
        f"{name}: {'; '.join(found)}" for name, found in sorted(problems.items())
    )
