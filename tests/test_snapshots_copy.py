"""The backup-API copy primitives under locks, damage and odd files."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from snapshots.sqlite_copy import (
    CopyFailed,
    backup_to,
    check_integrity,
    copy_database,
    restore_into,
    sha256_of,
)


def _db(path: Path, rows: int = 10, page_size: int = 4096, wal: bool = True) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA page_size={page_size}")
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(rows)])
    conn.commit()
    conn.close()
    return path


def _count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        conn.close()


def test_copy_is_a_verified_single_file_with_its_checksum(tmp_path):
    live = _db(tmp_path / "live.sqlite", rows=500)
    seen: list[tuple[int, int]] = []
    result = copy_database(
        live, tmp_path / "copy.sqlite", progress=lambda done, total: seen.append((done, total))
    )
    assert result.sha256 == sha256_of(result.path) and result.size == result.path.stat().st_size
    assert check_integrity(result.path, quick=False) is None
    assert _count(result.path) == 500
    assert seen[-1][0] == seen[-1][1]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("copy", ".copy"))) == [
        "copy.sqlite"
    ]


def test_copy_never_overwrites_and_leaves_nothing_on_failure(tmp_path):
    live = _db(tmp_path / "live.sqlite")
    backup_to(live, tmp_path / "copy.sqlite")
    with pytest.raises(CopyFailed, match="already exists"):
        backup_to(live, tmp_path / "copy.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(CopyFailed):
        backup_to(junk, tmp_path / "junk-copy.sqlite")
    assert not [p for p in tmp_path.iterdir() if "junk-copy" in p.name]


def test_restore_gives_up_on_a_database_locked_too_long_and_changes_nothing(tmp_path):
    live = _db(tmp_path / "live.sqlite", rows=5)
    snapshot = backup_to(live, tmp_path / "snap.sqlite")
    holder = sqlite3.connect(live, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t (v) VALUES ('held')")
    try:
        started = time.monotonic()
        with pytest.raises(CopyFailed, match="stayed locked"):
            restore_into(snapshot, live, busy_timeout=0.3)
        assert time.monotonic() - started < 5
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert _count(live) == 6


def test_restore_reports_progress_and_keeps_the_database_in_wal_mode(tmp_path):
    live = _db(tmp_path / "live.sqlite", rows=2000)
    snapshot = backup_to(live, tmp_path / "snap.sqlite")
    conn = sqlite3.connect(live)
    conn.execute("DELETE FROM t")
    conn.commit()
    conn.close()
    seen: list[tuple[int, int]] = []
    restore_into(snapshot, live, progress=lambda d, t: seen.append((d, t)))
    assert _count(live) == 2000
    assert seen and seen[-1][0] == seen[-1][1]
    assert live.read_bytes()[18:20] == b"\x02\x02"


def test_restore_refuses_a_snapshot_with_another_page_size(tmp_path):
    live = _db(tmp_path / "live.sqlite", rows=3, page_size=4096)
    other = _db(tmp_path / "other.sqlite", rows=9, page_size=8192, wal=False)
    with pytest.raises(CopyFailed, match="8192-byte pages"):
        restore_into(other, live)
    assert _count(live) == 3


def test_restore_refuses_a_damaged_snapshot(tmp_path):
    live = _db(tmp_path / "live.sqlite", rows=3)
    snapshot = tmp_path / "snap.sqlite"
    snapshot.write_bytes(b"SQLite format 3\x00" + b"\x00" * 5000)
    with pytest.raises(CopyFailed, match="damaged"):
        restore_into(snapshot, live)
    assert _count(live) == 3


class _BusyOnce:
    """A source connection whose first backup fails as SQLite does during a WAL recovery."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.calls = 0

    def backup(self, target: sqlite3.Connection, **kwargs) -> None:
        self.calls += 1
        if self.calls == 1:
            # Another connection opening the file runs WAL recovery: SQLITE_BUSY_RECOVERY,
            # an extended code the sqlite3 module's own retry loop does not recognise.
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = 261
            raise error
        self.conn.backup(target, **kwargs)


def test_a_source_briefly_busy_with_wal_recovery_is_waited_for(tmp_path):
    """Four admins snapshotting at once failed now and then with "database is locked"."""
    from snapshots.sqlite_copy import _backup

    source = sqlite3.connect(_db(tmp_path / "live.sqlite", rows=25))
    target = sqlite3.connect(tmp_path / "copy.sqlite")
    busy = _BusyOnce(source)
    try:
        _backup(busy, target, pages=-1, lock_timeout=5.0)
    finally:
        target.close()
        source.close()
    assert busy.calls == 2
    assert _count(tmp_path / "copy.sqlite") == 25
