"""Operator commands: dbstatus, migrate_all, and migrate/showmigrations per label."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from dbselect.files.schema import SchemaState
from dbselect.files.validation import inspect_database
from tests.helpers import dump_without_audit

ROOT = Path(settings.BASE_DIR)


def _call(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _sabotage(path: Path) -> None:
    """Make companies.0002 fail on this file: the table SQLite's table rebuild needs exists."""
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE "new__companies_company" (id integer)')
    conn.commit()
    conn.close()


def test_dbstatus_lists_every_scanned_database(make_database, make_old_database):
    make_database(name="Current Site", label="current")
    make_old_database(label="legacy")
    output = _call("dbstatus")
    lines = output.splitlines()
    assert lines[0].split()[:3] == ["LABEL", "DISPLAY", "NAME"]
    current = next(line for line in lines if line.startswith("current "))
    legacy = next(line for line in lines if line.startswith("legacy "))
    assert "Current Site" in current and "Up to date" in current and " 0 " in current
    assert "Old" in legacy and "Needs migration" in legacy and " 3 " in legacy
    assert "KiB" in current


def test_migrate_all_migrates_skips_reports_and_exits_non_zero(make_database, make_old_database):
    olds = [make_old_database(label=f"old{i}") for i in range(3)]
    make_database(name="Fine", label="fine")
    broken = make_old_database(label="broken")
    _sabotage(broken)
    before = dump_without_audit(broken)

    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("migrate_all", "--no-progress", stdout=out, stderr=io.StringIO())
    assert raised.value.returncode == 1
    assert str(raised.value) == "1 database(s) failed."
    text = out.getvalue()
    for path in olds:
        assert f"Migrated: {path}" in text
        assert inspect_database(str(path)).state is SchemaState.UP_TO_DATE
        assert len(list((path.parent / "snapshots").glob("*.sqlite"))) == 1
    assert "Up to date: " in text and "fine" in text
    assert f"FAILED: {broken}" in text and "already exists" in text
    assert "3 migrated, 1 up to date, 1 failed." in text
    conn = sqlite3.connect(broken)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert inspect_database(str(broken)).state is SchemaState.NEEDS_MIGRATION
    assert dump_without_audit(broken) == before


def test_migrate_all_dry_run_changes_nothing(make_old_database):
    old = make_old_database(label="dry")
    before = old.read_bytes()
    text = _call("migrate_all", "--dry-run", "--no-progress")
    assert "Would migrate: " in text and "companies.0002_company_website" in text
    assert old.read_bytes() == before


def test_migrate_all_with_path(make_old_database):
    old = make_old_database()
    text = _call("migrate_all", "--path", str(old), "--no-progress")
    assert "1 migrated, 0 up to date, 0 failed." in text


def test_label_aliases_work_for_djangos_own_commands(make_old_database, tmp_path):
    old = make_old_database(label="plant")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
        "NUKEWORKS_DATABASES_DIR": str(old.parent.parent),
        "NUKEWORKS_INSTANCE_DIR": str(tmp_path / "instance"),
        "NUKEWORKS_DEFAULT_DB": str(tmp_path / "default.sqlite"),
        "SESSION_FILE_PATH": str(tmp_path / "sessions"),
        "SECRET_KEY": "test",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    shown = subprocess.run(
        [*manage, "showmigrations", "companies", "--database", "plant"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "[X] 0001_initial" in shown and "[ ] 0002_company_website" in shown
    subprocess.run([*manage, "migrate", "--database", "plant", "-v", "0"], env=env, check=True)
    assert inspect_database(str(old)).state is SchemaState.UP_TO_DATE
