"""`manage.py dbcheck <label|path> [--full]`: SQLite's checks, foreign keys, exit status, on real
files. Files are damaged only as copies that no connection has open."""

from __future__ import annotations

import hashlib
import sqlite3
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from inspection.checking import run_check
from inspection.targets import of_path
from snapshots import service as snapshots
from tests.copy_helpers import audit, databases_dir
from tests.helpers import backup_copy

ADMIN = ("boss", "boss-pw-1234", True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dbcheck(*args: str) -> tuple[int, str]:
    """Run dbcheck; return (exit status, output)."""
    out = StringIO()
    try:
        call_command("dbcheck", *args, "--no-progress", stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def standalone_copy(source: Path, target: Path, *, companies: int = 0) -> Path:
    """A copy of `source` in rollback-journal mode (no -wal: every page is in the file), with
    `companies` more rows, written and closed before anything else sees it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    backup_copy(source, target)
    conn = sqlite3.connect(target)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.executemany(
        "INSERT INTO companies_company (name, is_vendor, is_owner, is_operator, is_constructor,"
        " country, notes, created_at, updated_at, website)"
        " VALUES (?, 0, 0, 0, 0, 'Testland', ?, ?, ?, '')",
        [(f"Company {i:05d}", "", "2024-01-01", "2024-01-01") for i in range(companies)],
    )
    conn.commit()
    conn.close()
    return target


def corrupt_a_table_page(path: Path, table: str) -> int:
    """Overwrite bytes in the middle of a leaf page of `table` (a file nobody has open)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        leaves = [
            r[0]
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
                (table,),
            )
        ]
    finally:
        conn.close()
    assert len(leaves) >= 3, leaves
    page = leaves[len(leaves) // 2]  # a full page, in the middle of the b-tree
    with open(path, "r+b") as raw:  # a test file no connection has open
        raw.seek((page - 1) * page_size + page_size // 2)
        # Small rows (about 60 bytes each): these bytes cover at least one cell's header.
        raw.write(b"\xff" * 128)
    return page


@pytest.fixture
def good(make_database) -> Path:
    return make_database(name="Good", companies=["Acme"], users=[ADMIN], label="good")


def test_a_sound_database_passes_with_exit_status_zero(good):
    status, text = dbcheck("good")
    assert status == 0, text
    assert f"Database file {good} (label good): ok" in text
    assert "quick_check: ok" in text and "foreign_key_check: ok" in text
    assert f"Attachments in {good.parent / 'payloads'}: 0 file(s)" in text
    assert "No problems found." in text
    # Audited in the database it concerns.
    [(outcome, username, detail)] = audit(good, "database.check")
    assert (outcome, username) == ("success", "manage.py")
    assert detail.startswith("quick_check: ok; attachments: 0 files")


def test_a_corrupted_page_exits_non_zero_and_nothing_is_written_to_the_file(make_database):
    source = make_database(name="Damaged", users=[ADMIN])
    path = standalone_copy(source, databases_dir() / "damaged" / "nukeworks.sqlite", companies=400)
    page = corrupt_a_table_page(path, "companies_company")
    before = digest(path)

    status, text = dbcheck("damaged")

    assert status == 1, text
    assert f"Database file {path} (label damaged): quick_check:" in text
    assert "quick_check: PROBLEMS" in text
    assert f"On tree page {page} cell" in text  # the damaged page, named by SQLite
    assert "Problems found." in text
    # The attachments section still reports (or says why it could not), never a crash.
    assert "Attachments" in text
    # A damaged file is never written to, not even the audit entry (logged only).
    assert "audit: logged only" in text
    assert digest(path) == before
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-journal").exists()


def test_a_corrupted_page_given_as_a_path(make_database, tmp_path):
    source = make_database(name="Damaged")
    path = standalone_copy(source, tmp_path / "elsewhere" / "site.sqlite", companies=400)
    corrupt_a_table_page(path, "companies_company")

    status, text = dbcheck(str(path))

    assert status == 1 and "quick_check: PROBLEMS" in text, text


def test_full_runs_integrity_check_which_finds_what_quick_check_does_not(make_database, tmp_path):
    """An index that no longer holds its table's rows: quick_check does not compare them."""
    source = make_database(name="Index")
    path = standalone_copy(source, tmp_path / "index" / "site.sqlite", companies=20)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE parts (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER)")
    conn.execute("CREATE INDEX parts_a ON parts(a)")
    conn.executemany("INSERT INTO parts (a, b) VALUES (?, ?)", [(i, 1000 - i) for i in range(50)])
    conn.commit()
    # The index's definition now names another column than the one its entries hold.
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "UPDATE sqlite_master SET sql = 'CREATE INDEX parts_a ON parts(b)' WHERE name = 'parts_a'"
    )
    conn.commit()
    conn.close()

    quick_status, quick = dbcheck(str(path))
    full_status, full = dbcheck(str(path), "--full")

    assert quick_status == 0 and "quick_check: ok" in quick, quick
    assert full_status == 1, full
    assert "integrity_check: PROBLEMS" in full
    assert "missing from index parts_a" in full


def test_foreign_key_violations_are_reported(good):
    conn = sqlite3.connect(good)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute(
        "INSERT INTO companies_project (name, status, notes, created_at, updated_at, company_id)"
        " VALUES ('Orphan', 'planned', '', '2024-01-01', '2024-01-01', 999)"
    )
    conn.commit()
    orphan = conn.execute("SELECT id FROM companies_project WHERE name = 'Orphan'").fetchone()[0]
    conn.close()

    status, text = dbcheck("good")

    assert status == 1, text
    assert "quick_check: ok" in text
    assert "foreign_key_check: 1 violation(s)" in text
    assert (
        f"companies_project row {orphan}: companies_project.company_id -> companies_company "
        "(no such row)" in text
    )
    # The file itself is sound: the failure is audited in it.
    [(outcome, _, detail)] = audit(good, "database.check")
    assert outcome == "failure" and "1 foreign key violation" in detail


def test_a_plain_sqlite_file_given_as_a_path_is_checked_read_only(tmp_path):
    path = tmp_path / "plain.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    conn.commit()
    conn.close()
    before, files = digest(path), set(tmp_path.iterdir())

    status, text = dbcheck(str(path), "--full")

    assert status == 0, text
    assert "integrity_check: ok" in text
    assert "Attachments: not a NukeWorks database (no attachments)" in text
    assert digest(path) == before and set(tmp_path.iterdir()) == files


def test_a_snapshot_is_checked_without_its_attachments_and_never_written(good):
    snapshot = snapshots.create_snapshot(str(good)).path
    before = digest(snapshot)

    status, text = dbcheck(str(snapshot))

    assert status == 0, text
    assert "a snapshot shares its database's attachment store" in text
    assert digest(snapshot) == before  # no audit entry: its SHA-256 still matches its sidecar


def test_unknown_label(good):
    with pytest.raises(CommandError, match=r"No database labelled 'nope'.*known labels: good"):
        call_command("dbcheck", "nope")


def test_progress_is_reported_up_to_the_end(make_database, tmp_path):
    source = make_database(name="Progress")
    path = standalone_copy(source, tmp_path / "big" / "site.sqlite", companies=3000)
    calls: list[tuple[int, int]] = []

    result = run_check(
        str(path), of_path(str(path)).header, full=True, progress=lambda d, t: calls.append((d, t))
    )

    assert result.ok and result.mode == "integrity_check"
    assert len(calls) > 3
    assert all(done <= total for done, total in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1][0] == calls[-1][1]  # 100 % only at the end
    assert all(done < total for done, total in calls[:-1])
