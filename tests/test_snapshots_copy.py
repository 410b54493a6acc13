"""The backup-API copy primitives under locks, damage and odd files."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from snapshots import sqlite_copy
from snapshots.sqlite_copy import (
    CopyFailed,
    backup_to,
    check_integrity,
    copy_database,
    restore_into,
    sha256_of,
)

needs_page_copier = pytest.mark.skipif(
    not sqlite_copy.page_copier_available(), reason="sqlean.py (the page copier's SQLite) missing"
)


@pytest.fixture(
    params=[
        "backup",
        pytest.param("pages", marks=needs_page_copier),
        pytest.param("pages-buffered", marks=needs_page_copier),
    ]
)
def copier(request, monkeypatch) -> str:
    """Run the test with each way of writing a copy: the backup API, the page copier (with
    O_DIRECT, and as on a network share: through the page cache, without mmap)."""
    if request.param.startswith("pages"):
        monkeypatch.setattr(sqlite_copy, "PAGE_COPY_MIN_BYTES", 0)
        if request.param == "pages-buffered":
            monkeypatch.setattr(sqlite_copy, "is_network_path", lambda path: True)
    else:
        monkeypatch.setattr(sqlite_copy, "page_copier_available", lambda: False)
    return request.param


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


def test_copy_is_a_verified_single_file_with_its_checksum(tmp_path, copier):
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
    assert result.path.read_bytes()[18:20] == b"\x01\x01"  # a rollback-journal file
    assert not Path(f"{result.path}-wal").exists()


@pytest.mark.parametrize("page_size", [1024, 8192, 65536])
def test_copy_keeps_the_page_size_and_every_row(tmp_path, copier, page_size):
    live = _db(tmp_path / "live.sqlite", rows=3000, page_size=page_size)
    # Rows still in -wal (never checkpointed) must be in the copy.
    conn = sqlite3.connect(live)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"late {i}",) for i in range(400)])
    conn.commit()
    try:
        assert Path(f"{live}-wal").stat().st_size > 0
        result = copy_database(live, tmp_path / "copy.sqlite")
    finally:
        conn.close()
    assert _count(result.path) == 3400
    assert result.sha256 == sha256_of(result.path)
    assert check_integrity(result.path, quick=False) is None
    recorded = int.from_bytes(result.path.read_bytes()[16:18], "big")
    assert recorded == (1 if page_size == 65536 else page_size)  # 65536 is written as 1


def test_a_rollback_journal_database_is_copied_too(tmp_path, copier):
    live = _db(tmp_path / "live.sqlite", rows=700, wal=False)
    result = copy_database(live, tmp_path / "copy.sqlite")
    assert _count(result.path) == 700 and result.sha256 == sha256_of(result.path)
    assert result.path.read_bytes()[18:20] == b"\x01\x01"


def test_a_copy_waits_for_a_locked_source_then_gives_up(tmp_path, copier):
    """A rollback-journal database being written (EXCLUSIVE lock) cannot be read meanwhile."""
    live = _db(tmp_path / "live.sqlite", rows=5, wal=False)
    holder = sqlite3.connect(live, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(CopyFailed, match="stayed locked"):
            copy_database(live, tmp_path / "copy.sqlite", busy_timeout=0.3)
        assert time.monotonic() - started < 5
        # Released while the copy waits: the copy goes on.
        threading.Timer(0.2, lambda: holder.execute("COMMIT")).start()
        result = copy_database(live, tmp_path / "copy.sqlite", busy_timeout=10)
    finally:
        time.sleep(0.3)
        holder.close()
    assert _count(result.path) == 5
    assert [p.name for p in tmp_path.iterdir() if "copy" in p.name] == ["copy.sqlite"]


def test_copy_never_overwrites_and_leaves_nothing_on_failure(tmp_path, copier):
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


def _copier_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake_copier.py"
    script.write_text("import json, sys\n" + body)
    return script


@needs_page_copier
def test_without_the_page_copier_s_sqlite_the_backup_api_copies(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_copy, "PAGE_COPY_MIN_BYTES", 0)
    script = _copier_script(tmp_path, "sys.exit(3)\n")  # pagecopy.EXIT_UNAVAILABLE
    monkeypatch.setattr(sqlite_copy, "PAGE_COPIER", script)
    live = _db(tmp_path / "live.sqlite", rows=42)
    result = copy_database(live, tmp_path / "copy.sqlite")
    assert _count(result.path) == 42 and result.sha256 == sha256_of(result.path)


@needs_page_copier
@pytest.mark.parametrize(
    "body, message",
    [
        ("sys.stderr.write('Traceback: boom')\nsys.exit(1)\n", "boom"),
        ("print(json.dumps({'error': 'disk full', 'locked': False}))\nsys.exit(1)\n", "disk full"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "exit status -9"),
        # A copier that reports pages it did not write: the check finds the file too short.
        (
            "open(sys.argv[2], 'wb').write(b'SQLite format 3\\0' + bytes(4080))\n"
            "print(json.dumps({'pages': 3, 'page_size': 4096, 'size': 12288,"
            " 'sha256': '0' * 64}))\n",
            "not the 3 pages",
        ),
    ],
)
def test_a_failed_page_copy_is_reported_and_leaves_nothing(tmp_path, monkeypatch, body, message):
    monkeypatch.setattr(sqlite_copy, "PAGE_COPY_MIN_BYTES", 0)
    monkeypatch.setattr(sqlite_copy, "PAGE_COPIER", _copier_script(tmp_path, body))
    live = _db(tmp_path / "live.sqlite", rows=3)
    with pytest.raises(CopyFailed, match=message):
        copy_database(live, tmp_path / "copy.sqlite")
    assert [p.name for p in tmp_path.iterdir() if "copy.sqlite" in p.name] == []


def _written(path: Path, pages: int, page_size: int = 4096) -> sqlite_copy._Written:
    return sqlite_copy._Written(pages, page_size, pages * page_size, "0" * 64)


def test_the_check_of_a_copy_finds_what_is_wrong_with_it(tmp_path):
    good = copy_database(_db(tmp_path / "live.sqlite", rows=300), tmp_path / "good.sqlite").path
    pages = good.stat().st_size // 4096
    sqlite_copy._check_copy(good, _written(good, pages))

    def damaged(name: str, data: bytes) -> Path:
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    data = good.read_bytes()
    wal_header = damaged("wal.sqlite", data[:18] + b"\x02\x02" + data[20:])
    with pytest.raises(CopyFailed, match="rollback-journal SQLite header"):
        sqlite_copy._check_copy(wal_header, _written(wal_header, pages))
    short = damaged("short.sqlite", data[: 4096 * (pages - 1)])
    with pytest.raises(CopyFailed, match=f"not the {pages} pages"):
        sqlite_copy._check_copy(short, _written(short, pages))
    # The header says fewer pages than the file holds (and the count it records is valid).
    fewer = damaged("fewer.sqlite", data[:28] + (pages - 1).to_bytes(4, "big") + data[32:])
    with pytest.raises(CopyFailed, match=f"{pages - 1} pages of 4096 bytes, not {pages}"):
        sqlite_copy._check_copy(fewer, _written(fewer, pages))
    garbage = damaged("garbage.sqlite", data[:100] + os.urandom(len(data) - 100))
    with pytest.raises(CopyFailed, match="cannot be read as a database"):
        sqlite_copy._check_copy(garbage, _written(garbage, pages))


@needs_page_copier
def test_the_page_copier_reads_one_moment_while_a_writer_goes_on(tmp_path, monkeypatch):
    """A copy of ~10 MB under a writer committing all the while: a prefix of its rows."""
    monkeypatch.setattr(sqlite_copy, "PAGE_COPY_MIN_BYTES", 0)
    live = _db(tmp_path / "live.sqlite", rows=0)
    conn = sqlite3.connect(live)
    conn.execute("CREATE TABLE filler (b BLOB)")
    conn.executemany("INSERT INTO filler VALUES (randomblob(1000))", [()] * 10_000)
    conn.commit()
    conn.close()
    stop = threading.Event()
    committed: list[int] = []

    def write() -> None:
        writer = sqlite3.connect(live, isolation_level=None, timeout=30)
        n = 0
        while not stop.is_set():
            n += 1
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO t (id, v) VALUES (?, randomblob(3000))", (n,))
            writer.execute("COMMIT")
            committed.append(n)
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        while len(committed) < 20:
            time.sleep(0.005)
        result = copy_database(live, tmp_path / "copy.sqlite")
        after = len(committed)
    finally:
        stop.set()
        thread.join()
    assert check_integrity(result.path, quick=False) is None
    assert result.sha256 == sha256_of(result.path)
    copy = sqlite3.connect(result.path)
    ids = [row[0] for row in copy.execute("SELECT id FROM t ORDER BY id")]
    copy.close()
    assert ids == list(range(1, len(ids) + 1)) and 20 <= len(ids) <= after


def test_the_page_copier_s_writer_goes_on_buffered_when_direct_io_is_refused(tmp_path, monkeypatch):
    """O_DIRECT refuses the short last write of a file of small pages (EINVAL)."""
    import errno
    import hashlib

    from snapshots import pagecopy

    real_pwrite, calls = os.pwrite, []

    def pwrite(fd, data, offset):
        calls.append(offset)
        if len(calls) == 2:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(pagecopy.os, "pwrite", pwrite)
    monkeypatch.setattr(pagecopy, "FLUSH_SLICE", 1)
    target = tmp_path / "out.bin"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    chunks = [os.urandom(4096) for _ in range(3)] + [os.urandom(1000)]
    try:
        pipeline = pagecopy._Pipeline(fd, 4096, direct=True)
        for chunk in chunks:
            buf = pipeline.buffer()
            buf[: len(chunk)] = chunk
            pipeline.submit(buf, len(chunk))
        digest = pipeline.finish()
    finally:
        os.close(fd)
    assert target.read_bytes() == b"".join(chunks)
    assert digest == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert pipeline.written == 13288 and not pipeline.direct
    assert calls == [0, 4096, 4096, 8192, 12288]


def test_the_page_copier_stops_at_a_write_error(tmp_path, monkeypatch):
    import errno

    from snapshots import pagecopy

    def pwrite(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pagecopy.os, "pwrite", pwrite)
    fd = os.open(tmp_path / "out.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        pipeline = pagecopy._Pipeline(fd, 4096, direct=False)
        with pytest.raises(OSError, match="No space left"):
            for _ in range(20):  # more than the buffers: the error comes back while filling
                buf = pipeline.buffer()
                buf[:4] = b"data"
                pipeline.submit(buf, 4096)
        with pytest.raises(OSError, match="No space left"):
            pipeline.finish()
    finally:
        os.close(fd)


@needs_page_copier
def test_the_page_copier_stops_when_its_parent_goes_away(tmp_path):
    """A worker killed mid-snapshot: its copier must not keep a read transaction open."""
    import subprocess
    import sys

    from snapshots import pagecopy

    live = _db(tmp_path / "live.sqlite", rows=5, wal=False)
    holder = sqlite3.connect(live, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # the copier waits for it (up to 60 s)
    try:
        child = subprocess.Popen(
            [
                sys.executable,
                "-P",
                str(sqlite_copy.PAGE_COPIER),
                sqlite_copy._readonly_uri(live),
                str(tmp_path / "copy.sqlite"),
                "60",
                "1",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        time.sleep(0.5)
        assert child.poll() is None
        child.stdin.close()  # what the parent's death does
        assert child.wait(timeout=10) == pagecopy.EXIT_ORPHANED
        child.stdout.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not (tmp_path / "copy.sqlite").exists()


@needs_page_copier
def test_the_page_copier_s_sqlite_gives_pages_in_order_without_sorting_them():
    """Sorting would hold the whole database in a temporary b-tree before the first page.

    This only runs a query plan in this process, on an in-memory database: sqlean.py must
    never open a live file here (snapshots.pagecopy says why).
    """
    import sqlean

    conn = sqlean.connect(":memory:")
    try:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT data FROM sqlite_dbpage ORDER BY pgno"
        ).fetchall()
        sorted_plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT data FROM sqlite_dbpage ORDER BY pgno DESC"
        ).fetchall()
    finally:
        conn.close()
    assert not [row for row in plan if "TEMP B-TREE" in row[-1]], plan
    assert [row for row in sorted_plan if "TEMP B-TREE" in row[-1]]  # the check can fail
