"""initdb and ensureadmin: what `make run` relies on, safe to run twice."""

from __future__ import annotations

import io
import re
import sqlite3

from django.core.management import call_command

from dbselect.conf import get_config
from dbselect.files.validation import inspect_database


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_initdb_creates_a_migrated_database_with_snapshots_folder():
    output = _run("initdb", "plant", "--display-name", "Plant")
    path = get_config()["DATABASES_DIR"] / "plant" / "nukeworks.sqlite"
    assert f"Created database 'Plant' at {path}" in output
    assert (path.parent / "snapshots").is_dir()
    info = inspect_database(str(path))
    assert info.usable and info.display_name == "Plant"


def test_initdb_twice_keeps_data_and_name():
    _run("initdb", "keep", "--display-name", "Keep")
    path = get_config()["DATABASES_DIR"] / "keep" / "nukeworks.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO companies_company (name, website, is_vendor, is_owner, is_operator,"
        " is_constructor, country, notes, created_at, updated_at)"
        " VALUES ('Kept', '', 0, 0, 0, 0, '', '', 'now', 'now')"
    )
    conn.execute("UPDATE system_settings SET value = 'Renamed' WHERE key = 'db_display_name'")
    conn.commit()
    conn.close()
    output = _run("initdb", "keep", "--display-name", "Keep")
    assert "Updated database 'Renamed'" in output
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM companies_company").fetchall() == [("Kept",)]
    conn.close()


def test_ensureadmin_prints_the_password_once_and_never_resets_it():
    _run("initdb", "adm")
    alias = "adm"
    first = _run("ensureadmin", "--database", alias)
    password = re.search(r"password: (\S+)", first).group(1)
    second = _run("ensureadmin", "--database", alias)
    assert "already exists; password unchanged" in second
    assert password not in second
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.db_manager(alias).get(username="admin")
    assert admin.check_password(password) and admin.is_superuser and admin.is_staff
