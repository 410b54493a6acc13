"""`manage.py dbinspect <label|path>`: what is inside a database file, read-only, on real files."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dbselect.files.schema import code_migrations
from inspection import contents
from inspection.targets import of_path
from tests.helpers import backup_copy

ADMIN = ("boss", "boss-pw-1234", True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def beside(path: Path) -> set[str]:
    return {p.name for p in path.parent.iterdir()}


def inspect_json(*args: str) -> dict:
    out = StringIO()
    call_command("dbinspect", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def independent_counts(path: Path) -> dict[str, int]:
    """Every plain table's row count, read with plain sqlite3 (immutable: creates nothing)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master "
                "WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'"
            )
        ]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        conn.close()


@pytest.fixture
def known(tmp_path: Path) -> Path:
    """A plain SQLite file (rollback journal) whose content is known exactly."""
    path = tmp_path / "known" / "inventory.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE parts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, weight REAL);
        CREATE TABLE orders (
            id INTEGER PRIMARY KEY,
            part_id INTEGER NOT NULL REFERENCES parts(id) ON DELETE CASCADE,
            quantity INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX orders_part ON orders(part_id);
        CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
        CREATE TABLE log (message TEXT);
        CREATE TABLE scratch (blob BLOB);
        -- A trigger and a view: listed by dbinspect, never run.
        CREATE TRIGGER orders_log AFTER INSERT ON orders
            BEGIN INSERT INTO log VALUES ('order ' || new.id); END;
        CREATE VIEW heavy AS SELECT p.name, sum(o.quantity) AS total
            FROM parts p JOIN orders o ON o.part_id = p.id GROUP BY p.name;
        """
    )
    conn.executemany(
        "INSERT INTO parts (name, weight) VALUES (?, ?)",
        [("bolt", 1.5), ("nut", 0.5), ("gear", 12.0)],
    )
    conn.executemany(
        "INSERT INTO orders (part_id, quantity) VALUES (?, ?)",
        [(1, 10), (1, 5), (2, 7), (3, 1), (3, 2)],
    )
    conn.executemany("INSERT INTO kv VALUES (?, ?)", [("colour", "red"), ("size", "L")])
    # Pages that end up on the free list: a table filled, then emptied.
    conn.executemany("INSERT INTO scratch VALUES (?)", [(os.urandom(3000),) for _ in range(20)])
    conn.commit()
    conn.execute("DELETE FROM scratch")
    conn.commit()
    conn.close()
    return path


def test_json_of_a_known_file_gives_its_exact_tables_and_row_counts(known):
    before, files_before = digest(known), beside(known)

    data = inspect_json(str(known))

    assert data["row_counts"] == {
        "kv": 2,
        "log": 5,  # the trigger ran once per order when the rows were written above
        "orders": 5,
        "parts": 3,
        "scratch": 0,
    }
    assert data["row_counts"] == independent_counts(known)
    assert [t["name"] for t in data["tables"]] == ["kv", "log", "orders", "parts", "scratch"]
    kinds = {t["name"]: t["kind"] for t in data["tables"]}
    assert kinds["kv"] == "without rowid" and kinds["parts"] == "table"
    assert {i["name"] for i in data["indexes"]} == {"orders_part", "sqlite_autoindex_parts_1"}
    autoindex = next(i for i in data["indexes"] if i["name"] == "sqlite_autoindex_parts_1")
    assert autoindex["unique"] and autoindex["automatic"] and autoindex["table"] == "parts"
    assert [(t["name"], t["table"]) for t in data["triggers"]] == [("orders_log", "orders")]
    assert [v["name"] for v in data["views"]] == ["heavy"]
    # The file as SQLite describes it.
    conn = sqlite3.connect(f"file:{known}?mode=ro", uri=True)
    page_size, page_count, freelist = (
        conn.execute(f"PRAGMA {p}").fetchone()[0]
        for p in ("page_size", "page_count", "freelist_count")
    )
    conn.close()
    assert (data["page_size"], data["page_count"], data["freelist_count"]) == (
        page_size,
        page_count,
        freelist,
    )
    assert freelist >= 10 and data["freelist_bytes"] == freelist * page_size
    assert data["file_bytes"] == known.stat().st_size == page_count * page_size
    assert data["journal_mode"] == "delete"
    assert data["sizes_source"] == "dbstat"
    # Every b-tree's pages, from dbstat: together with the free list, the whole file.
    btree_pages = sum(t["pages"] for t in data["tables"]) + sum(i["pages"] for i in data["indexes"])
    assert btree_pages + freelist + 1 == page_count  # + page 1, sqlite_schema's
    assert all(t["bytes"] == t["pages"] * page_size for t in data["tables"])
    # Not a NukeWorks database (no migrations): nothing else about it is invented.
    assert data["schema_state"] == "not_nukeworks" and data["display_name"] is None
    assert data["label"] is None and data["incomplete"] is False
    # Read-only: the file is unchanged, the trigger and the view never ran, nothing was created.
    assert digest(known) == before and beside(known) == files_before


def test_a_nukeworks_database_by_label(make_database):
    path = make_database(
        name="Known Site", companies=["Acme", "Bolt", "Core"], users=[ADMIN], label="known"
    )

    data = inspect_json("known")

    assert data["label"] == "known" and data["path"] == str(path)
    assert data["display_name"] == "Known Site"
    assert data["schema_state"] == "up_to_date" and data["schema_problem"] == ""
    counts = data["row_counts"]
    assert counts == independent_counts(path)
    assert counts["companies_company"] == 3
    assert counts["accounts_user"] == 1
    assert counts["django_migrations"] == len(code_migrations().plan)
    assert counts["companies_project"] == 0
    assert data["triggers"] == [] and data["views"] == []
    assert data["journal_mode"] == "wal"  # NukeWorks' local files are in WAL mode
    assert data["seed_name"] is None and data["seed_version"] is None


def test_a_wal_file_is_read_without_creating_wal_or_shm(tmp_path, make_database):
    source = make_database(name="Wal")
    path = tmp_path / "copy.sqlite"
    backup_copy(source, path)  # a WAL-mode file, checkpointed, no -wal/-shm beside it
    assert path.read_bytes()[18:20] == b"\x02\x02"
    files_before = beside(path)

    data = inspect_json(str(path))

    assert data["journal_mode"] == "wal"
    assert data["row_counts"]["companies_company"] == 0
    assert beside(path) == files_before


def test_text_sections(known):
    out = StringIO()
    call_command("dbinspect", str(known), stdout=out)
    summary = out.getvalue()
    assert (
        "Contents      5 tables, 15 rows, 2 indexes, 1 triggers, 1 views (sizes from dbstat)"
        in summary
    )
    assert "orders" in summary and "never run" in summary
    assert "orders_part" not in summary  # indexes with --tables

    out = StringIO()
    call_command("dbinspect", str(known), "--tables", "--triggers", "--schema", stdout=out)
    text = out.getvalue()
    assert (
        "orders_part" in text
        and "sqlite_autoindex_parts_1" in text
        and "(unique, automatic)" in text
    )
    assert "Triggers (1; listed, never run):" in text and "orders_log on orders" in text
    assert "Views (1; never queried):" in text
    assert "CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;" in text

    out = StringIO()
    call_command("dbinspect", str(known), "--table", "orders", stdout=out)
    text = out.getvalue()
    assert "Table orders (table): 5 rows" in text
    assert "part_id  INTEGER NOT NULL" in text and "quantity  INTEGER NOT NULL DEFAULT 1" in text
    assert "foreign key (part_id) -> parts (id) on delete CASCADE" in text
    assert "index orders_part (index): part_id" in text
    assert "trigger orders_log (listed, never run)" in text

    detail = inspect_json(str(known), "--table", "parts")["table_detail"]
    assert [c["name"] for c in detail["columns"]] == ["id", "name", "weight"]
    assert detail["table"]["rows"] == 3


def test_an_unknown_table_label_or_path_is_a_clear_error(known, tmp_path, monkeypatch):
    with pytest.raises(
        CommandError, match=r"No table 'nope'.*tables: kv, log, orders, parts, scratch"
    ):
        call_command("dbinspect", str(known), "--table", "nope", stdout=StringIO())
    with pytest.raises(CommandError, match="No database labelled 'nope'"):
        call_command("dbinspect", "nope", stdout=StringIO())
    missing = tmp_path / "no-such-folder" / "site.sqlite"
    for command in ("dbinspect", "dbcheck"):
        with pytest.raises(CommandError, match="No file exists at this path"):
            call_command(command, str(missing), stdout=StringIO())
        # A relative path is resolved against the working directory, and never created either.
        monkeypatch.chdir(tmp_path)
        with pytest.raises(CommandError, match="No file exists at this path"):
            call_command(command, "./relative.sqlite", stdout=StringIO())
        with pytest.raises(CommandError, match="a folder"):
            call_command(command, str(tmp_path), stdout=StringIO())
    assert not missing.parent.exists()
    assert not (tmp_path / "relative.sqlite").exists()
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all " * 10)
    with pytest.raises(CommandError, match="not a SQLite database"):
        call_command("dbinspect", str(text), stdout=StringIO())


def test_without_dbstat_sizes_are_estimated_and_said_so(known, monkeypatch):
    monkeypatch.setattr(contents, "dbstat_available", lambda conn: False)
    data = inspect_json(str(known))
    assert data["sizes_source"] == "estimate"
    assert any("no dbstat table" in note for note in data["notes"])
    parts = next(t for t in data["tables"] if t["name"] == "parts")
    assert parts["pages"] == 1 and parts["bytes"] == data["page_size"]
    assert all(i["bytes"] is None for i in data["indexes"])
    assert data["row_counts"]["orders"] == 5  # counts stay exact


def test_a_time_budget_leaves_out_what_did_not_fit(known):
    target = of_path(str(known))
    result = contents.inspect_file(target.path, target.header, time_budget=0.0)
    assert result.incomplete
    assert all(t.rows is None and "time budget" in t.note for t in result.tables)
    assert result.page_count > 0 and [t.name for t in result.triggers] == ["orders_log"]


def test_a_nukeworks_file_with_a_trigger_is_inspected_and_the_trigger_never_runs(
    make_database, tmp_path
):
    source = make_database(name="Rigged", companies=["Acme"])
    path = tmp_path / "rigged.sqlite"
    backup_copy(source, path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute(
        "CREATE TRIGGER steal AFTER UPDATE ON companies_company "
        "BEGIN DELETE FROM accounts_user; END"
    )
    conn.close()
    before = digest(path)

    data = inspect_json(str(path))

    assert data["schema_state"] is None
    assert 'trigger "steal" on "companies_company"' in data["schema_problem"]
    assert [(t["name"], t["table"]) for t in data["triggers"]] == [("steal", "companies_company")]
    assert data["row_counts"]["companies_company"] == 1
    assert data["display_name"] == "Rigged"  # read from system_settings, a plain table
    assert digest(path) == before
