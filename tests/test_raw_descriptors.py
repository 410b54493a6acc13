"""The request path never opens a live database file with a descriptor of its own.

Closing any descriptor of a file releases every POSIX lock the process holds on it, SQLite's
included (dbselect/live_files.py, bench/posix_lock_hazard.py). Python raises an `open` audit
event for every builtin open() and os.open(); SQLite's own opens raise none. While a user
goes through every page that touches a database (select, sign in, list, create, snapshot,
restore, engines, dispose, select again under other spellings, a file changed behind the
app's back), this test records each `open` of a file this process works on, or of its
-wal/-shm. There must be none.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client

from dbselect.engines import live_files
from tests.helpers import select, sign_in

_recording = threading.Event()
_violations: list[str] = []


def _live(path: str) -> bool:
    for suffix in ("-wal", "-shm", "-journal"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    try:
        return live_files.is_live(os.stat(path))
    except (OSError, ValueError):
        return False


def _hook(event: str, args: tuple) -> None:
    if event != "open" or not _recording.is_set():
        return
    target, flags = args[0], args[2]
    if isinstance(target, int):
        return  # os.fdopen() of a descriptor already counted when it was opened
    if isinstance(flags, int) and flags & os.O_PATH:
        return  # an O_PATH descriptor reads nothing, and its close releases no lock
    path = os.fsdecode(target) if isinstance(target, bytes | os.PathLike) else str(target)
    if _live(path):
        _violations.append(path)


sys.addaudithook(_hook)  # audit hooks cannot be removed: it records only while asked to


@pytest.fixture
def recording() -> Iterator[list[str]]:
    """Record raw opens of live files from the first request on (see start_recording)."""
    _violations.clear()
    try:
        yield _violations
    finally:
        _recording.clear()


def start_recording() -> None:
    """Start recording (after the test has made its files, outside the request path)."""
    _recording.set()


def test_the_check_sees_a_raw_open_of_a_live_file(make_database, recording):
    path = make_database(name="Watched")
    start_recording()
    client = Client()
    assert select(client, path).status_code == 302
    with open(path, "rb") as fh:  # what the request path must never do
        fh.read(100)
    assert recording == [str(path)]


def test_no_page_opens_a_live_database_file(make_database, tmp_path, recording):
    path = make_database(name="Plant", users=[("boss", "pw-boss-123", True)], label="default")
    link = tmp_path / "plant-link.sqlite"
    link.symlink_to(path)
    start_recording()
    client = Client()
    assert select(client, path).status_code == 302
    assert sign_in(client, "boss", "pw-boss-123").status_code == 302
    for url in ("/", "/companies/", "/projects/", "/snapshots/", "/admin/engines/"):
        assert client.get(url).status_code == 200, url
    created = client.post("/companies/new/", {"name": "Raw-free Co", "country": "X"})
    assert created.status_code == 302
    assert client.post("/snapshots/create", {"note": "n"}).status_code == 302
    [snapshot] = [p.name for p in (path.parent / "snapshots").glob("*.sqlite")]
    restored = client.post(f"/snapshots/{snapshot}/restore", {})
    assert restored.status_code == 302
    # Another program writes the file: its size and mtime change, the fingerprint is re-read.
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO companies_company (name, country, website, is_vendor, is_owner, "
        "is_operator, is_constructor, notes, created_at, updated_at) "
        "VALUES ('Outside', '', '', 0, 0, 0, 0, '', '2026-01-01', '2026-01-01')"
    )
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert client.get("/companies/").status_code == 200
    for spelling in (str(link), "/" + str(path), "/proc/self/root" + str(path)):
        assert select(Client(), spelling).status_code == 302, spelling
    assert client.post("/admin/engines/dispose", {"path": str(path)}).status_code in (200, 302)
    assert client.get("/").status_code == 200
    assert recording == []


def test_validation_of_a_live_file_goes_through_sqlite(make_database, recording):
    from dbselect.files.validation import inspect_database

    path = Path(make_database(name="Live"))
    start_recording()
    select(Client(), path)
    info = inspect_database(str(path))
    assert info.usable and info.header is None
    assert recording == []


def test_a_mark_ends_with_the_file_it_was_made_for(tmp_path):
    """An inode freed by a deleted database and reused by a new file is not live any more."""
    other = tmp_path / "user-file.sqlite"
    other.write_bytes(b"SQLite format 3\x00" + bytes(84))
    gone = tmp_path / "deleted-database.sqlite"
    os.link(other, gone)  # the same inode under the name that was live
    assert live_files.mark_live(str(gone))
    assert live_files.is_live(os.stat(other))
    gone.unlink()
    assert not live_files.is_live(os.stat(other))
    assert live_files.read_prefix(str(other), 16).data == b"SQLite format 3\x00"
