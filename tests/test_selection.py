"""POST /select-db: what each kind of file does to the session."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from django.test import Client

from dbselect import session as db_session
from dbselect.files.validation import ValidationFailed, inspect_database
from tests.helpers import messages_of, select, sign_in

FALLBACK = "The database you chose could not be opened; you are still working on {name}. Reason: "


def _foreign_sqlite(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    return path


def test_valid_database_switches_at_once(make_database):
    path = make_database(name="Plant East", companies=["Acme"])
    client = Client()
    response = select(client, path)
    assert response.status_code == 302
    assert client.session[db_session.SELECTED_PATH] == str(path)
    assert client.session[db_session.SELECTED_NAME] == "Plant East"


def test_invalid_file_keeps_the_working_database_with_the_banner(make_database, tmp_path):
    good = make_database(name="Working DB")
    client = Client()
    select(client, good)
    junk = tmp_path / "junk.sqlite"
    junk.write_text("this is not a database")

    response = select(client, junk)

    assert response.status_code == 400
    [banner] = [m for m in messages_of(response) if m.startswith("The database you chose")]
    assert banner.startswith(FALLBACK.format(name="Working DB"))
    assert "not a SQLite database" in banner
    assert client.session[db_session.SELECTED_PATH] == str(good)


def test_invalid_file_without_previous_database_stays_on_the_selector(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\0" * 4096)
    client = Client()
    response = select(client, junk)
    assert response.status_code == 400
    assert any("not a SQLite database" in m for m in messages_of(response))
    assert db_session.SELECTED_PATH not in client.session
    assert client.get("/companies/")["Location"].startswith("/select-db")


def test_database_needing_migration_is_refused_with_the_plan(old_database):
    client = Client()
    response = select(client, old_database)
    page = response.content.decode()
    assert response.status_code == 403
    assert "needs migration" in page
    assert "companies.0002_company_website" in page
    assert db_session.SELECTED_PATH not in client.session


def test_database_from_a_newer_version_is_refused(make_database):
    path = make_database()
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO django_migrations (app, name, applied) "
        "VALUES ('companies', '0999_from_the_future', '2030-01-01')"
    )
    conn.commit()
    conn.close()
    client = Client()
    response = select(client, path)
    assert response.status_code == 400
    assert any("newer version of NukeWorks" in m for m in messages_of(response))
    assert any("companies.0999_from_the_future" in m for m in messages_of(response))


def test_sqlite_file_of_another_application_is_refused(tmp_path):
    path = _foreign_sqlite(tmp_path / "other.sqlite")
    client = Client()
    response = select(client, path)
    assert response.status_code == 400
    assert any("not a NukeWorks one" in m for m in messages_of(response))


def test_django_database_of_another_project_is_refused(tmp_path):
    path = tmp_path / "django_other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE django_migrations (id INTEGER PRIMARY KEY, app, name, applied)")
    conn.execute("INSERT INTO django_migrations (app, name, applied) VALUES ('shop', '0001', 'x')")
    conn.commit()
    conn.close()
    response = select(Client(), path)
    assert any("not a NukeWorks one" in m for m in messages_of(response))


def test_empty_database_switches_with_a_warning(make_database):
    path = make_database(name="Fresh", companies=[])
    client = Client()
    response = select(client, path, next="/select-db")
    page = client.get(response["Location"]).content.decode()
    assert "holds no companies yet" in page
    assert client.session[db_session.SELECTED_PATH] == str(path)


def test_friendly_name_is_written_into_the_file(make_database):
    path = make_database(name=None)
    client = Client()
    select(client, path, display_name="  Site <North>  ")
    assert inspect_database(str(path)).display_name == "Site <North>"
    assert client.session[db_session.SELECTED_NAME] == "Site <North>"
    page = client.get("/select-db").content.decode()
    assert "Site &lt;North&gt;" in page and "Site <North>" not in page


def test_display_name_falls_back_to_the_folder_name(make_database):
    path = make_database(name=None, label="riverside")
    page = Client().get("/select-db").content.decode()
    assert "<strong>riverside</strong>" in page
    assert str(path) in page


def test_selecting_a_missing_path_creates_nothing(tmp_path):
    missing = tmp_path / "nowhere" / "new.sqlite"
    response = select(Client(), missing)
    assert response.status_code == 400
    assert any("No file exists at this path" in m for m in messages_of(response))
    assert not missing.exists()
    assert not missing.parent.exists()


def test_choice_radio_is_used_when_no_path_is_typed(make_database):
    path = make_database(name="Listed", label="listed")
    client = Client()
    page = client.get("/select-db").content.decode()
    assert f'value="{path}"' in page
    response = client.post("/select-db", {"choice": str(path), "path": "  "})
    assert response.status_code == 302
    assert client.session[db_session.SELECTED_PATH] == str(path)


def test_selector_lists_scanned_databases_with_state(make_database, old_database):
    make_database(name="Scanned One", label="one")
    page = Client().get("/select-db").content.decode()
    assert "Scanned One" in page
    assert "(one)" in page


def test_validation_reads_without_creating_companion_files(make_database):
    path = make_database()
    before = sorted(p.name for p in path.parent.iterdir())
    info = inspect_database(str(path))
    assert info.usable
    assert sorted(p.name for p in path.parent.iterdir()) == before


def test_validation_error_is_explained(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    try:
        inspect_database(str(folder))
    except ValidationFailed as exc:
        assert "folder" in exc.reason
    else:
        raise AssertionError("a folder must be refused")


def test_switch_back_and_forth_while_logged_in(make_database):
    a = make_database(name="A", companies=["In A"], users=[("sam", "pw", False)])
    b = make_database(name="B", companies=["In B"], users=[("sam", "pw", False)])
    client = Client()
    select(client, a)
    sign_in(client, "sam", "pw")
    select(client, b)
    sign_in(client, "sam", "pw")  # one sign-in per database; then switching needs none
    select(client, a)
    response = select(client, b, next="/companies/")
    assert response["Location"] == "/companies/"
    page = client.get("/companies/").content.decode()
    assert ">In B</a>" in page and ">In A</a>" not in page
    assert "Database: <strong>B</strong>" in page
