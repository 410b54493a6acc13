"""Snapshots and restores of a database that other connections keep writing."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from snapshots import service, sqlite_copy
from snapshots.locks import folder_lock
from snapshots.sqlite_copy import check_integrity
from tests.helpers import wait_for


@pytest.fixture(
    autouse=True,
    params=[
        "backup",
        pytest.param(
            "pages",
            marks=pytest.mark.skipif(
                not sqlite_copy.page_copier_available(), reason="sqlean.py missing"
            ),
        ),
    ],
)
def copier(request, monkeypatch) -> str:
    """Every test runs with each way of writing a snapshot: backup API, page copier."""
    if request.param == "pages":
        monkeypatch.setattr(sqlite_copy, "PAGE_COPY_MIN_BYTES", 0)
    else:
        monkeypatch.setattr(sqlite_copy, "page_copier_available", lambda: False)
    return request.param


def _ticks_table(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ticks (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    conn.commit()
    conn.close()


@contextmanager
def _steady_writer(path: Path) -> Iterator[list[int]]:
    """Insert ticks 1, 2, 3… one per transaction until the block ends; yield the committed."""
    committed: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            n = 0
            while not stop.is_set():
                n += 1
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO ticks (id, n) VALUES (?, ?)", (n, n))
                conn.execute("COMMIT")
                committed.append(n)
                # A breath between transactions, as real requests have: SQLite's locks are
                # not fair, and a writer with none starves every other writer (the audit
                # entries written through Django's connection included).
                time.sleep(0.0005)
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        while len(committed) < 50:  # the writer is really running before we go on
            time.sleep(0.01)
        yield committed
    finally:
        stop.set()
        thread.join()
    assert not errors, errors


def _ticks(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT n FROM ticks ORDER BY id")]
    finally:
        conn.close()


def test_snapshots_under_a_steady_writer_are_sound_and_hold_a_prefix_of_the_writes(
    make_database,
):
    path = make_database(label="alpha")
    _ticks_table(path)
    with _steady_writer(path) as committed:
        snapshots = []
        for _ in range(3):
            snapshots.append(service.create_snapshot(str(path), username="test"))
            time.sleep(0.05)
        written_while_snapshotting = len(committed)
        # The writer goes on after the last copy (a fixed sleep is not enough when the
        # machine is busy and a commit's fsync takes longer).
        last = len(_ticks(snapshots[-1].path))
        assert wait_for(lambda: len(committed) > last)

    assert written_while_snapshotting > 50
    previous = 0
    for snapshot in snapshots:
        assert check_integrity(snapshot.path, quick=False) is None
        ticks = _ticks(snapshot.path)
        # Every tick committed before the copy's read began, and nothing half-written.
        assert ticks == list(range(1, len(ticks) + 1))
        assert len(ticks) >= previous
        previous = len(ticks)
        header = snapshot.path.read_bytes()[:20]
        assert header[18:20] == b"\x01\x01"  # a self-contained rollback-journal file
        assert not Path(f"{snapshot.path}-wal").exists()
    assert previous < len(_ticks(path))


def test_restore_under_a_steady_writer_leaves_a_sound_database(make_database):
    path = make_database(label="alpha")
    _ticks_table(path)
    with _steady_writer(path) as committed:
        time.sleep(0.1)
        snapshot = service.create_snapshot(str(path), username="test")
        kept = len(_ticks(snapshot.path))
        # The safety snapshot must hold writes the restored one does not.
        assert wait_for(lambda: len(committed) > kept)
        result = service.restore_snapshot(str(path), snapshot.name, username="test")
        time.sleep(0.05)

    assert check_integrity(path, quick=False) is None
    assert path.read_bytes()[18:20] == b"\x02\x02"  # still a WAL database
    ticks = _ticks(path)
    # The restored prefix, then the writer's next ticks, which went on after the restore.
    assert ticks[:kept] == list(range(1, kept + 1))
    assert len(_ticks(result.safety.path)) > kept


def test_concurrent_creates_each_get_their_own_file(make_database):
    path = make_database(label="alpha")
    results: list[service.Snapshot] = []
    threads = [
        threading.Thread(target=lambda: results.append(service.create_snapshot(str(path))))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({s.name for s in results}) == 4
    assert len(service.list_snapshots(str(path))) == 4
    assert not [p for p in (path.parent / "snapshots").iterdir() if p.name.endswith(".partial")]


def test_an_operation_waits_for_a_running_restore_then_says_so(make_database, monkeypatch):
    path = make_database(label="alpha")
    snapshot = service.create_snapshot(str(path))
    monkeypatch.setattr(service, "LOCK_TIMEOUT", 0.2)
    # What a long restore in another worker process holds meanwhile.
    with folder_lock(service.folder_for(str(path)), exclusive=True):
        for attempt in (
            lambda: service.create_snapshot(str(path)),
            lambda: service.delete_snapshot(str(path), snapshot.name),
            lambda: service.restore_snapshot(str(path), snapshot.name),
        ):
            with pytest.raises(service.SnapshotError, match="still running"):
                attempt()
    assert [s.name for s in service.list_snapshots(str(path))] == [snapshot.name]
