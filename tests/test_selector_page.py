"""GET /select-db: one list of radio choices, each database described, refusals in place."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from django.test import Client

from dbselect import scanner
from tests.helpers import select, sign_in

RADIO = re.compile(r'<input type="radio" name="choice" value="([^"]*)"([^>]*)>')


def radios(page: str) -> list[tuple[str, str]]:
    """Return (value, the rest of the tag) of every option of the one group."""
    return RADIO.findall(page)


def checked(page: str) -> list[str]:
    return [value for value, rest in radios(page) if re.search(r"\bchecked\b", rest)]


def row_of(page: str, value: str) -> str:
    """Return the <li> of the option whose value is `value`."""
    start = page.rindex("<li", 0, page.index(f'name="choice" value="{value}"'))
    return page[start : page.index("</li>", start)]


def test_scanned_recent_and_typed_options_are_one_group_with_exactly_one_checked(
    make_database,
):
    first = make_database(name="First", label="first")
    second = make_database(name="Second", label="second")
    elsewhere = make_database(name="Elsewhere")
    client = Client()
    select(client, elsewhere)
    select(client, second)
    page = client.get("/select-db").content.decode()
    values = [value for value, _ in radios(page)]
    assert values == [str(first), str(second), str(elsewhere), ""]
    assert 'id="choice-typed"' in page
    # The session's database is the one checked, and only it.
    assert checked(page) == [str(second)]
    # A new visitor: the last used one (the machine's default), still only one.
    assert checked(Client().get("/select-db").content.decode()) == [str(second)]


def test_a_first_visit_checks_the_first_usable_database(make_database, make_old_database):
    make_old_database(label="aaa-old")
    usable = make_database(name="Usable", label="usable")
    assert checked(Client().get("/select-db").content.decode()) == [str(usable)]


def test_without_any_database_the_typed_option_is_checked():
    # Django's Client, not pytest-django's `client` fixture: that one sets up Django's test
    # databases, which replaces the configured `default` file for the rest of the run.
    client = Client()
    assert checked(client.get("/select-db").content.decode()) == [""]


def test_last_used_is_a_badge_on_its_row_not_a_separate_entry(make_database):
    path = make_database(name="Remembered", label="remembered")
    select(Client(), path)
    page = Client().get("/select-db").content.decode()
    assert page.count(">Last used</span>") == 1
    assert ">Last used</span>" in row_of(page, str(path))
    assert [value for value, _ in radios(page)].count(str(path)) == 1


def test_last_used_outside_the_scanned_folder_is_listed_once_with_the_badge(make_database):
    path = make_database(name="Outside")
    select(Client(), path)
    page = Client().get("/select-db").content.decode()
    assert [value for value, _ in radios(page)].count(str(path)) == 1
    assert page.count(">Last used</span>") == 1
    assert ">Last used</span>" in row_of(page, str(path))


def test_a_missing_recent_file_is_disabled_never_checked(make_database):
    gone = make_database(name="Gone")
    kept = make_database(name="Kept")
    client = Client()
    select(client, kept)
    select(client, gone)  # the last one chosen: it would be pre-selected if it existed
    os.remove(gone)
    page = client.get("/select-db").content.decode()
    [rest] = [rest for value, rest in radios(page) if value == str(gone)]
    assert "disabled" in rest and "checked" not in rest
    assert "missing" in row_of(page, str(gone))
    assert len(checked(page)) == 1 and checked(page) != [str(gone)]


def test_each_database_shows_size_modified_company_count_and_path(make_database):
    path = make_database(name="Described", label="described", companies=["Alpha", "Beta"])
    page = Client().get("/select-db").content.decode()
    row = row_of(page, str(path))
    assert "<strong>Described</strong>" in row and "(described)" in row
    assert f'title="{path}"' in row  # the path on hover
    assert f'<code class="db-path small">{path}</code>' in row  # and in small text
    assert re.search(r'class="db-size">[\d.]+\xa0(KB|MB|bytes)<', row)
    assert re.search(r'modified <time datetime="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d</time>', row)
    assert ">2 companies<" in row


def test_a_large_database_is_counted_only_up_to_the_limit(make_database, monkeypatch):
    monkeypatch.setattr(scanner, "COUNT_LIMIT", 5)
    path = make_database(name="Large", label="large", companies=[f"Bulk {i}" for i in range(12)])
    page = Client().get("/select-db").content.decode()
    assert ">5+ companies<" in row_of(page, str(path))
    [db] = [db for db in scanner.scan() if db.path == str(path)]
    assert db.count == 6  # never counted past the limit


def test_schema_state_badges(make_database, make_old_database, tmp_path):
    ok = make_database(name="Fine", label="fine")
    old = make_old_database(label="old")
    junk = Path(tmp_path / "databases" / "junk" / "nukeworks.sqlite")
    junk.parent.mkdir(parents=True)
    junk.write_text("not a database at all")
    page = Client().get("/select-db").content.decode()

    def badge(path: Path) -> str:
        return re.search(r'class="badge badge-(\w+) state-badge">([^<]+)<', row_of(page, str(path)))

    assert badge(ok).groups() == ("ok", "up to date")
    assert badge(old).groups() == ("warn", "needs migration")
    assert badge(junk).groups() == ("bad", "invalid")
    assert "The file is not a SQLite database" in row_of(page, str(junk))


def test_a_newer_database_is_badged_newer(make_database):
    path = make_database(name="Future", label="future")
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO django_migrations (app, name, applied) VALUES ('companies', '9999_x', '')"
    )
    conn.commit()
    conn.close()
    page = Client().get("/select-db").content.decode()
    assert 'class="badge badge-bad state-badge">newer<' in row_of(page, str(path))


def test_a_database_being_prepared_is_badged(make_database, tmp_path):
    from dbselect.layout import PREPARING_MARKER

    folder = tmp_path / "databases" / "coming"
    folder.mkdir(parents=True)
    marker = folder / PREPARING_MARKER
    marker.write_text('{"state": "queued", "display_name": "Coming Soon", "done": 1, "total": 3}')
    page = Client().get("/select-db").content.decode()
    row = row_of(page, str(folder / "nukeworks.sqlite"))
    assert "Coming Soon" in row
    assert 'class="badge badge-info state-badge">being prepared: 1/3<' in row
    marker.write_text('{"state": "failed", "display_name": "Coming Soon"}')
    page = Client().get("/select-db").content.decode()
    row = row_of(page, str(folder / "nukeworks.sqlite"))
    assert 'class="badge badge-bad state-badge">preparation failed<' in row


def test_a_refused_typed_path_names_the_file_next_to_the_field(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    response = select(Client(), junk)
    assert response.status_code == 400
    page = response.content.decode()
    field = page.index('id="id_path"')
    error = re.search(r'<p class="field-error" id="path-error"[^>]*>([^<]*)</p>', page)
    assert error is not None and error.start() > field
    assert str(junk) in error.group(1) and "not a SQLite database" in error.group(1)
    assert 'aria-describedby="path-error"' in page
    assert checked(page) == [""]  # the typed option stays selected, with the typed path
    assert f'value="{junk}"' in page


def test_a_refused_listed_database_shows_the_reason_on_its_row(make_database, tmp_path):
    junk = tmp_path / "databases" / "broken" / "nukeworks.sqlite"
    junk.parent.mkdir(parents=True)
    junk.write_text("not a database")
    response = Client().post("/select-db", {"choice": str(junk), "path": ""})
    assert response.status_code == 400
    page = response.content.decode()
    row = row_of(page, str(junk))
    assert re.search(r'class="field-error"[^>]*>broken \(' + re.escape(str(junk)), row)
    assert 'id="path-error"' not in page


def test_the_operator_sees_new_database_on_the_same_page(make_database):
    default = make_database(name="Default", label="default", users=[("root", "pw", True)])
    client = Client()
    select(client, default)
    assert sign_in(client, "root", "pw").status_code == 302
    page = client.get("/select-db").content.decode()
    assert 'id="new-database"' in page
    assert 'id="new-database"' not in Client().get("/select-db").content.decode()


def test_a_postgresql_database_shows_its_server_estimate_and_badge(make_pg_database):
    make_pg_database("works", name="Works PG", companies=["One", "Two"])
    page = Client().get("/select-db").content.decode()
    row = row_of(page, "postgresql:works")
    assert "Works PG" in row and "PostgreSQL" in row
    assert 'class="badge badge-ok state-badge">up to date<' in row
    assert re.search(r'class="db-size">[\d.]+\xa0(KB|MB)<', row)
    # reltuples, or a bounded count while the table was never analysed
    assert re.search(r'class="db-count">(≈ )?2 companies<', row)


def test_a_refused_choice_that_is_no_row_shows_the_reason_under_the_typed_field(tmp_path):
    response = Client().post("/select-db", {"choice": str(tmp_path / "nothing.sqlite")})
    assert response.status_code == 400
    error = re.search(r'id="path-error"[^>]*>([^<]*)<', response.content.decode())
    assert error is not None and "nothing.sqlite" in error.group(1)
