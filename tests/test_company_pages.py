"""The company and project pages: delete with confirmation, "Add project" from a company,
pages with totals and numbers, whitelisted sorts, the company picker, bounded counts."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from django.test import Client

from nukeworks.companies import paging
from tests import browser
from tests.helpers import company_names, select, sign_in
from tests.live import GunicornServer

ADMIN = ("ada", "pw-admin-1", True)
CLERK = ("cal", "pw-clerk-1", False)


def _client(path: Path, user=ADMIN) -> Client:
    client = Client()
    select(client, path)
    assert sign_in(client, user[0], user[1]).status_code == 302
    return client


def _sql(path: Path, statement: str, *params) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(statement, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


def _company_id(path: Path, name: str) -> int:
    return _sql(path, "SELECT id FROM companies_company WHERE name = ?", name)[0][0]


def _add_project(path: Path, name: str, company_id: int) -> int:
    conn = sqlite3.connect(path)
    try:
        cursor = conn.execute(
            "INSERT INTO companies_project (name, company_id, status, notes, created_at, "
            "updated_at) VALUES (?, ?, 'planned', '', '2026-01-01', '2026-01-01')",
            (name, company_id),
        )
        conn.commit()
        return cursor.lastrowid
    finally:
        conn.close()


def _fill_companies(path: Path, count: int, start: int = 0) -> None:
    """`count` companies named "Bulk 000001"... inserted with one SQL statement."""
    _sql(
        path,
        "INSERT INTO companies_company (name, is_vendor, is_owner, is_operator, is_constructor,"
        " country, website, notes, created_at, updated_at) "
        "WITH RECURSIVE n(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM n WHERE x < ?) "
        "SELECT printf('Bulk %06d', x), 0, 0, 0, 0, 'Bulkland', '', '', '2026-01-01', "
        "'2026-01-01' FROM n",
        start + 1,
        start + count,
    )


def _names_in_table(html: str) -> list[str]:
    return re.findall(r'<td><a href="/companies/\d+/">([^<]+)</a></td>', html)


# Delete with confirmation


def test_company_delete_asks_first_then_deletes_on_post(make_database):
    db = make_database(companies=["Doomed Co", "Kept Co"], users=[ADMIN])
    client = _client(db)
    pk = _company_id(db, "Doomed Co")
    detail = client.get(f"/companies/{pk}/").content.decode()
    assert f'href="/companies/{pk}/delete/"' in detail
    confirm = client.get(f"/companies/{pk}/delete/")
    page = confirm.content.decode()
    assert confirm.status_code == 200
    assert "Delete company “Doomed Co”?" in page and 'method="post"' in page
    assert "csrfmiddlewaretoken" in page and "Cancel" in page
    assert company_names(db) == {"Doomed Co", "Kept Co"}  # GET changes nothing
    response = client.post(f"/companies/{pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/companies/"
    assert company_names(db) == {"Kept Co"}
    audit = _sql(db, "SELECT action, outcome FROM audit_auditentry WHERE action LIKE 'company.%'")
    assert audit == [("company.delete", "success")]


def test_delete_needs_the_csrf_token(make_database):
    db = make_database(companies=["Guarded Co"], users=[ADMIN])
    client = _client(db)
    client.handler.enforce_csrf_checks = True
    pk = _company_id(db, "Guarded Co")
    assert client.post(f"/companies/{pk}/delete/").status_code == 403
    assert company_names(db) == {"Guarded Co"}


def test_non_admin_cannot_delete_and_sees_no_button(make_database):
    db = make_database(companies=["Safe Co"], users=[CLERK])
    client = _client(db, CLERK)
    pk = _company_id(db, "Safe Co")
    project = _add_project(db, "Safe Unit", pk)
    assert "/delete/" not in client.get(f"/companies/{pk}/").content.decode()
    assert client.get(f"/companies/{pk}/delete/").status_code == 403
    assert client.post(f"/companies/{pk}/delete/").status_code == 403
    assert client.post(f"/projects/{project}/delete/").status_code == 403
    assert company_names(db) == {"Safe Co"}
    assert _sql(db, "SELECT count(*) FROM companies_project") == [(1,)]
    denied = _sql(db, "SELECT action FROM audit_auditentry WHERE outcome = 'denied'")
    assert ("company.delete_denied",) in denied and ("project.delete_denied",) in denied


def test_signed_out_visitor_is_sent_to_sign_in(make_database):
    db = make_database(companies=["Quiet Co"], users=[ADMIN])
    client = Client()
    select(client, db)
    pk = _company_id(db, "Quiet Co")
    assert client.post(f"/companies/{pk}/delete/").status_code == 302  # to sign in first
    assert company_names(db) == {"Quiet Co"}


def test_a_company_with_projects_is_not_deleted(make_database):
    db = make_database(companies=["Busy Co"], users=[ADMIN])
    client = _client(db)
    pk = _company_id(db, "Busy Co")
    _add_project(db, "Busy Unit", pk)
    page = client.get(f"/companies/{pk}/delete/").content.decode()
    assert "still has 1 project" in page and "Delete company</button>" not in page
    response = client.post(f"/companies/{pk}/delete/", follow=True)
    assert company_names(db) == {"Busy Co"}
    assert "still has projects" in response.content.decode()


def test_project_delete_returns_to_its_company(make_database):
    db = make_database(companies=["Host Co"], users=[ADMIN])
    client = _client(db)
    pk = _company_id(db, "Host Co")
    project = _add_project(db, "Old Unit", pk)
    assert (
        "Delete project “Old Unit”?" in client.get(f"/projects/{project}/delete/").content.decode()
    )
    response = client.post(f"/projects/{project}/delete/")
    assert response["Location"] == f"/companies/{pk}/"
    assert _sql(db, "SELECT count(*) FROM companies_project") == [(0,)]


# Add project from a company page, the picker


def test_add_project_from_a_company_preselects_it(make_database):
    db = make_database(companies=["Picked Co", "Other Co"], users=[ADMIN])
    client = _client(db)
    pk = _company_id(db, "Picked Co")
    detail = client.get(f"/companies/{pk}/").content.decode()
    assert f'href="/projects/new/?company={pk}"' in detail and "Add project" in detail
    form = client.get(f"/projects/new/?company={pk}").content.decode()
    assert re.search(r'<input[^>]*name="company"[^>]*value="Picked Co"', form)
    assert 'list="company-options"' in form
    assert f'href="/companies/{pk}/">Cancel</a>' in form
    assert not re.search(r'<select[^>]*name="company"', form)
    response = client.post(
        "/projects/new/", {"name": "Unit 9", "company": "Picked Co", "status": "planned"}
    )
    assert response.status_code == 302
    assert _sql(db, "SELECT company_id FROM companies_project WHERE name = 'Unit 9'") == [(pk,)]


def test_picker_refuses_an_unknown_company_next_to_the_field(make_database):
    db = make_database(companies=["Real Co"], users=[ADMIN])
    client = _client(db)
    response = client.post(
        "/projects/new/", {"name": "Unit X", "company": "Imaginary Co", "status": "planned"}
    )
    assert response.status_code == 200
    assert "No company is named “Imaginary Co”" in response.content.decode()


def test_picker_search_endpoint(make_database):
    db = make_database(companies=["Atomic Alpha", "atomic beta", "Beta Atomic"], users=[CLERK])
    client = _client(db, CLERK)
    answer = client.get("/companies/search.json?q=ATOM").json()
    assert [c["name"] for c in answer["results"]] == ["Atomic Alpha", "atomic beta"]
    assert all(isinstance(c["id"], int) for c in answer["results"])
    assert len(client.get("/companies/search.json").json()["results"]) == 3
    assert Client().get("/companies/search.json?q=a").status_code in (302, 403)


def test_edit_form_shows_the_company_name(make_database):
    db = make_database(companies=["Named Co"], users=[ADMIN])
    client = _client(db)
    project = _add_project(db, "Unit E", _company_id(db, "Named Co"))
    form = client.get(f"/projects/{project}/edit/").content.decode()
    assert re.search(r'<input[^>]*name="company"[^>]*value="Named Co"', form)


# Pages, sorts


def test_pagination_shows_totals_and_page_numbers(make_database):
    db = make_database(users=[CLERK])
    _fill_companies(db, 260)
    client = _client(db, CLERK)
    first = client.get("/companies/").content.decode()
    assert "1\u201350 of" in first and '<span class="total">260</span>' in first
    assert "page 1 of 6" in first
    assert 'aria-current="page">1<' in first and 'href="?page=2"' in first
    assert 'href="?page=6"' in first and 'rel="next"' in first and 'rel="prev"' not in first
    assert _names_in_table(first)[:2] == ["Bulk 000001", "Bulk 000002"]
    last = client.get("/companies/?page=6").content.decode()
    assert "251\u2013260 of" in last and 'rel="next"' not in last
    assert _names_in_table(last) == [f"Bulk {i:06d}" for i in range(251, 261)]
    middle = client.get("/companies/?page=4").content.decode()  # read from the end
    assert _names_in_table(middle)[0] == "Bulk 000151"
    assert client.get("/companies/?page=7").status_code == 404
    assert client.get("/companies/?page=x").status_code == 404


def test_sorts_are_whitelisted_with_a_stable_tie_breaker(make_database):
    db = make_database(companies=["Bravo", "Alpha", "Charlie"], users=[CLERK])
    _sql(db, "UPDATE companies_company SET country = 'Same'")
    client = _client(db, CLERK)
    assert _names_in_table(client.get("/companies/?sort=-name").content.decode()) == [
        "Charlie",
        "Bravo",
        "Alpha",
    ]
    by_id = [n for (n,) in _sql(db, "SELECT name FROM companies_company ORDER BY id")]
    assert _names_in_table(client.get("/companies/?sort=country").content.decode()) == by_id
    assert _names_in_table(client.get("/companies/?sort=-country").content.decode()) == by_id[::-1]
    for unknown in ("notes", "password", "-id;drop", "projects"):
        page = client.get(f"/companies/?sort={unknown}")
        assert page.status_code == 200
        assert _names_in_table(page.content.decode()) == ["Alpha", "Bravo", "Charlie"]
    page = client.get("/companies/?sort=name").content.decode()
    assert 'href="?sort=-name"' in page and 'aria-sort="ascending"' in page
    projects = client.get("/projects/?sort=-capacity&page=1")
    assert projects.status_code == 200


def test_search_keeps_the_sort_and_filters(make_database):
    db = make_database(companies=["Fusion One", "Fission Two", "Fusion Three"], users=[CLERK])
    client = _client(db, CLERK)
    page = client.get("/companies/?q=fusion&sort=-name").content.decode()
    assert _names_in_table(page) == ["Fusion Three", "Fusion One"]
    assert '<span class="total">2</span>' in page


# Counts above the threshold


def test_counts_above_the_threshold_are_bounded(make_database, monkeypatch):
    monkeypatch.setattr(paging, "COUNT_LIMIT", 100)
    db = make_database(users=[CLERK])
    _fill_companies(db, 160)
    client = _client(db, CLERK)
    page = client.get("/companies/").content.decode()
    assert '<span class="total">100+</span>' in page
    assert " of 4" not in page and 'rel="next"' in page  # no last page: it is not counted
    assert re.search(r'<span class="gap"[^>]*>…</span>\s*<a rel="next"', page)
    home = client.get("/").content.decode()
    assert '<span class="num" id="company-count">100+</span>' in home
    # A deep page still answers, by offset over the index.
    assert _names_in_table(client.get("/companies/?page=4").content.decode())[0] == "Bulk 000151"
    # Searching a large table: names starting with the term, on the Lower(name) index.
    found = client.get("/companies/?q=bulk 00015").content.decode()
    assert "names starting with" in found
    assert _names_in_table(found) == [f"Bulk {i:06d}" for i in range(150, 160)]
    assert '<span class="total">10</span>' in found
    second = client.get("/companies/?q=BULK 0001&page=2").content.decode()  # from the end
    assert "51\u201361 of" in second  # Bulk 000100 to 000160
    assert _names_in_table(second) == [f"Bulk {i:06d}" for i in range(150, 161)]


def test_bounded_count_unit(make_database):
    from django.db import connections

    from dbselect import engines, state
    from nukeworks.companies.models import Company

    db = make_database()
    _fill_companies(db, 30)
    engine = engines.register(str(db))
    with state.override(engine.alias):
        assert paging.count(Company.objects.all(), filtered=False, limit=50) == paging.Total(
            30, exact=True
        )
        total = paging.count(Company.objects.all(), filtered=False, limit=20)
        assert total == paging.Total(20, exact=False) and str(total) == "20+"
    connections[engine.alias].close()
    assert str(paging.Total(1_234_567, exact=False, estimated=True)) == "about 1,234,567"
    assert paging.page_numbers(10, 20, True) == [1, None, 8, 9, 10, 11, 12, None, 20]
    assert paging.page_numbers(1, None, True) == [1, 2, None]


# PostgreSQL: the planner's estimate above the threshold, the prefix search by LIKE


def test_postgres_lists_show_the_estimate_and_search_by_prefix(make_pg_database, monkeypatch):
    from django.db import connections

    from dbselect import engines
    from nukeworks.companies.models import Company, Project

    monkeypatch.setattr(paging, "COUNT_LIMIT", 100)
    target = make_pg_database("pgpages", companies=["Keeper"], users=[ADMIN])
    alias = engines.register(target).alias
    try:
        Company.objects.using(alias).bulk_create(
            Company(name=f"Bulk {i:06d}", country="Bulkland") for i in range(1, 161)
        )
        keeper = Company.objects.using(alias).get(name="Keeper")
        project = Project.objects.using(alias).create(name="Doomed Unit", company=keeper)
        with connections[alias].cursor() as cursor:
            cursor.execute("ANALYZE companies_company")
    finally:
        connections[alias].close()
    client = _client(target)
    page = client.get("/companies/").content.decode()
    assert '<span class="total">about 161</span>' in page
    found = client.get("/companies/?q=BULK 00015").content.decode()
    assert "names starting with" in found
    assert _names_in_table(found) == [f"Bulk {i:06d}" for i in range(150, 160)]
    picker = client.get("/companies/search.json?q=kee").json()["results"]
    assert [c["name"] for c in picker] == ["Keeper"]
    assert client.post(f"/projects/{project.pk}/delete/").status_code == 302
    assert client.post(f"/companies/{keeper.pk}/delete/").status_code == 302
    names = _names_in_table(client.get("/companies/?sort=-name").content.decode())
    assert names[0] == "Bulk 000160" and "Keeper" not in names


# In a real browser: the picker's suggestions, delete with its confirmation, at both widths


@browser.needs_chromium
@pytest.mark.parametrize("width", list(browser.WIDTHS.values()), ids=list(browser.WIDTHS))
def test_picker_and_delete_in_a_browser(make_database, tmp_path, width):
    db = make_database(
        name="Picker Plant",
        companies=["Tidal Works", "Tidewater Energy", "Other Co"],
        users=[ADMIN],
        label="picker",
    )
    _fill_companies(db, 120)
    tidal = _company_id(db, "Tidal Works")
    server = GunicornServer(
        tmp_path, workers=1, settings_module="tests.settings", env={"NUKEWORKS_LIVE_SERVER": "1"}
    ).start()
    problems: list[str] = []
    try:
        with browser.chromium(width=width) as page:
            page.goto(server.base + "/companies/")  # to the selector, then back here
            page.fill("#id_path", str(db))
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url("**/login/**")
            page.fill("#id_username", ADMIN[0])
            page.fill("#id_password", ADMIN[1])
            page.press("#id_password", "Enter")
            page.wait_for_url(server.base + "/companies/")

            def check(name: str) -> None:
                browser.screenshot(page, f"{name}-{width}")
                if browser.overflow(page) > 0:
                    problems.append(f"{name}: wider than {width} px")
                problems.extend(f"{name}: {v}" for v in browser.axe_violations(page))

            page.goto(server.base + "/companies/?sort=-name&page=2")
            assert "page 2 of 3" in page.inner_text("main")
            check("company-list-page-2")

            page.goto(server.base + f"/companies/{tidal}/")
            page.get_by_role("link", name="Add project").click()
            assert page.input_value("#id_company") == "Tidal Works"
            page.fill("#id_company", "")
            page.type("#id_company", "tid")
            # (no wait_for_function: its string is eval'd, which the pages' CSP forbids)
            page.wait_for_selector("#company-options option:nth-child(2)", state="attached")
            options = page.eval_on_selector_all(
                "#company-options option", "els => els.map(e => e.value)"
            )
            assert options == ["Tidal Works", "Tidewater Energy"]
            page.fill("#id_company", "Tidewater Energy")
            page.fill("#id_name", "Browser Unit")
            check("project-new-picker")
            page.get_by_role("button", name="Save").click()
            page.wait_for_url("**/projects/*/")
            assert "Tidewater Energy" in page.inner_text("main")

            other = _company_id(db, "Other Co")
            page.goto(server.base + f"/companies/{other}/")
            page.get_by_role("link", name="Delete").click()
            page.wait_for_url(f"**/companies/{other}/delete/")
            check("company-delete-confirm")
            page.get_by_role("button", name="Delete company").click()
            page.wait_for_url(server.base + "/companies/")
            assert "Company “Other Co” deleted." in page.inner_text("body")
    finally:
        server.stop()
    assert problems == []
    assert "Other Co" not in company_names(db)
