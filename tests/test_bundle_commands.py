"""manage.py exportdb and importdb: bundles from labelled databases, progress bars, errors."""

from __future__ import annotations

import sqlite3
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from bundles import package
from bundles.newdb import database_path
from tests.bundle_factory import company, domain_snapshot, make_bundle, project, rows_of
from tests.helpers import dump_without_audit

STARTER = Path(__file__).resolve().parent.parent / "seeds" / "starter" / "1"


def _run(name: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _audit(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT action, outcome, username FROM audit_auditentry").fetchall()
    finally:
        conn.close()


def test_exportdb_then_importdb_new_copies_the_data_with_progress_bars(make_database, tmp_path):
    source = make_database(companies=["Acme", "Bolt"], label="alpha")
    conn = sqlite3.connect(source)
    conn.execute(
        "INSERT INTO companies_project (name, company_id, status, notes, created_at, updated_at)"
        " SELECT 'Unit 1', id, 'operating', '', '2024-01-01 00:00:00', '2024-01-01 00:00:00'"
        " FROM companies_company"
    )
    conn.commit()
    conn.close()
    bundle = tmp_path / "alpha.zip"

    out, err = _run(
        "exportdb", "alpha", "-o", str(bundle), "--name", "acme", "--version", "3",
        "--description", "two companies",
    )  # fmt: skip
    assert "Exported alpha as acme@3" in out and "2 company rows, 2 project rows" in out
    assert "Export" in err and "rows" in err and "4/4" in err  # the tqdm bar
    exported = package.load(bundle)
    assert (exported.name, exported.version, exported.description) == ("acme", 3, "two companies")
    assert [a[0] for a in _audit(source)] == ["bundle.export"]

    out, err = _run("importdb", str(bundle), "--new", "beta", "--display-name", "Beta site")
    assert "Created beta from acme@3 (2 company rows, 2 project rows)" in out
    assert "ensureadmin --database beta" in out
    assert "Import" in err and "8/8" in err  # validated, then written
    beta = database_path("beta")
    assert domain_snapshot(beta) == domain_snapshot(source)
    assert ("db_display_name", "Beta site") in rows_of(
        beta, "SELECT key, value FROM system_settings"
    )
    assert [a[0] for a in _audit(beta)] == ["bundle.import"]
    assert _audit(beta)[0][2].endswith("(manage.py)")


def test_importdb_into_an_empty_database_and_users_on_request(make_database, tmp_path):
    make_database(companies=["Acme"], users=[("ann", "ann-pw", True)], label="alpha")
    _run("exportdb", "alpha", "-o", str(tmp_path / "u.zip"), "--users", "--no-progress")
    empty = make_database(companies=[], label="empty")
    out, err = _run("importdb", str(tmp_path / "u.zip"), "--into", "empty", "--no-progress")
    assert "Imported into empty" in out and "1 user rows" in out and err == ""
    assert rows_of(empty, "SELECT username FROM accounts_user") == [("ann",)]

    other = make_database(companies=[], label="other")
    _run("importdb", str(tmp_path / "u.zip"), "--into", "other", "--no-users", "--no-progress")
    assert rows_of(other, "SELECT username FROM accounts_user") == []
    assert rows_of(other, "SELECT name FROM companies_company") == [("Acme",)]


def test_importdb_accepts_a_seed_package_folder(make_database):
    out, _ = _run("importdb", str(STARTER), "--new", "demo", "--no-progress")
    assert "Created demo from starter@1 (16 company rows, 14 project rows)" in out


def test_importdb_refuses_without_changing_anything(make_database, tmp_path):
    full = make_database(companies=["Mine"], label="full")
    before = dump_without_audit(full)
    with pytest.raises(CommandError, match="already holds companies or projects"):
        _run("importdb", str(STARTER), "--into", "full", "--no-progress")
    assert dump_without_audit(full) == before

    with pytest.raises(CommandError, match="A database labelled 'full' already exists"):
        _run("importdb", str(STARTER), "--new", "full", "--no-progress")
    assert dump_without_audit(full) == before

    bad = make_bundle(
        tmp_path / "bad.zip", companies=[company(1, "A")], projects=[project(1, "P", 7)]
    )
    with pytest.raises(CommandError, match=r"company_id 7 names no row of companies\.company"):
        _run("importdb", str(bad), "--new", "fresh", "--no-progress")
    folder = database_path("fresh").parent
    assert not database_path("fresh").exists()
    assert [p.name for p in folder.iterdir()] == [".build.lock"]

    (tmp_path / "junk.zip").write_bytes(b"junk")
    with pytest.raises(CommandError, match=r"not a valid \.zip bundle"):
        _run("importdb", str(tmp_path / "junk.zip"), "--new", "fresh2")
    assert not database_path("fresh2").parent.exists()

    with pytest.raises(CommandError, match="Invalid label"):
        _run("importdb", str(STARTER), "--new", "../escape", "--no-progress")
    with pytest.raises(CommandError, match=r"No database labelled 'nope' \(known labels: full\)"):
        _run("importdb", str(STARTER), "--into", "nope")
    with pytest.raises(CommandError, match="one of the arguments --new --into is required"):
        _run("importdb", str(STARTER))


def test_exportdb_refuses_clearly(make_database, make_old_database, tmp_path):
    make_database(companies=["Acme"], label="alpha")
    (tmp_path / "taken.zip").write_bytes(b"mine")
    with pytest.raises(CommandError, match="already exists"):
        _run("exportdb", "alpha", "-o", str(tmp_path / "taken.zip"))
    assert (tmp_path / "taken.zip").read_bytes() == b"mine"
    with pytest.raises(CommandError, match="No database labelled 'nope'"):
        _run("exportdb", "nope", "-o", str(tmp_path / "x.zip"))
    with pytest.raises(CommandError, match="Invalid package name"):
        _run("exportdb", "alpha", "-o", str(tmp_path / "x.zip"), "--name", "a b")
    make_old_database(label="old")
    with pytest.raises(CommandError, match="needs migration"):
        _run("exportdb", "old", "-o", str(tmp_path / "x.zip"))
    assert not (tmp_path / "x.zip").exists()


def test_exportdb_to_a_folder_makes_a_seed_package(make_database, tmp_path, settings):
    make_database(companies=["Acme"], label="site")
    settings.NUKEWORKS_SEEDS_DIR = tmp_path / "seeds"
    (tmp_path / "seeds" / "site").mkdir(parents=True)
    _run("exportdb", "site", "-o", str(tmp_path / "seeds" / "site" / "2"), "--version", "2")
    assert package.find("site").ref == "site@2"
    assert not zipfile.is_zipfile(tmp_path / "seeds" / "site" / "2" / "manifest.json")
