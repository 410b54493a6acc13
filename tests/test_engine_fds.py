"""File-descriptor bounds with 1,000 distinct databases, each selected once, on real gunicorn.

CONN_MAX_AGE=0: once the requests end, every worker is back to its baseline of descriptors.
Persistent connections: each thread keeps at most MAX_CONNECTIONS_PER_THREAD files open, so a
worker holds fewer than threads x that many database files whatever the number of databases.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.live import Browser, GunicornServer, fd_count, open_files, rss_bytes

DATABASES = 1000
THREADS = 2
PER_THREAD = 8


@pytest.fixture(scope="module")
def thousand_databases(tmp_path_factory, template_database) -> list[Path]:
    """1,000 migrated database files (copies of the closed, checkpointed template)."""
    root = tmp_path_factory.mktemp("thousand")
    files = []
    for i in range(DATABASES):
        path = root / f"db{i:04d}" / "nukeworks.sqlite"
        path.parent.mkdir()
        shutil.copyfile(template_database, path)
        files.append(path)
    return files


def _select_each_once(server: GunicornServer, files: list[Path], sessions: int = 4) -> None:
    """Select every file once, from `sessions` browser sessions working in parallel."""
    failures: list[tuple[Path, int]] = []

    def work(part: list[Path]) -> None:
        browser = Browser(server.base)
        for path in part:
            status, _ = browser.select(path)
            if status != 200:
                failures.append((path, status))

    threads = [threading.Thread(target=work, args=(files[i::sessions],)) for i in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def _warm_up(server: GunicornServer, path: Path) -> None:
    # Every thread of every worker serves a few requests first: imports, templates, store.
    _select_each_once(server, [path] * 20)


def _descriptors(server: GunicornServer, pid: int) -> int:
    """Return a worker's open descriptors, less the engine store its janitor opens briefly."""
    return fd_count(pid) - len(open_files(pid, server.root / "instance" / "engines"))


def _held_databases(pid: int, root: Path) -> set[Path]:
    """Return the database folders under `root` whose files worker `pid` holds open."""
    return {Path(f).parent for f in open_files(pid, root)}


def test_descriptors_return_to_baseline_without_persistent_connections(
    tmp_path, thousand_databases
):
    server = GunicornServer(tmp_path / "srv", workers=2, threads=THREADS, conn_max_age=0)
    server.start()
    try:
        _warm_up(server, thousand_databases[0])
        pids = server.worker_pids()
        root = thousand_databases[0].parent.parent
        # A baseline taken while the warm-up's last request is still ending would be too high.
        for pid in pids:
            wait_for(lambda pid=pid: not open_files(pid, root))
        baseline = {pid: _descriptors(server, pid) for pid in pids}
        rss_before = {pid: rss_bytes(pid) for pid in pids}
        _select_each_once(server, thousand_databases)
        for pid in pids:
            # The server closes a response (connections, then the client socket) only after
            # the client has read it: give the last requests a moment to end.
            wait_for(
                lambda pid=pid: (
                    not open_files(pid, root) and _descriptors(server, pid) <= baseline[pid]
                )
            )
            assert open_files(pid, root) == []
            assert _descriptors(server, pid) <= baseline[pid]
        growth = sum(rss_bytes(p) - rss_before[p] for p in pids) / DATABASES
        print(f"RSS growth per registered database: {growth / 1024:.1f} KiB")
    finally:
        server.stop()


def test_persistent_connections_stay_below_threads_times_recent_databases(
    tmp_path, thousand_databases
):
    server = GunicornServer(tmp_path / "srv", workers=2, threads=THREADS, conn_max_age=600)
    server.start()
    try:
        _warm_up(server, thousand_databases[0])
        _select_each_once(server, thousand_databases)
        root = thousand_databases[0].parent.parent
        bound = THREADS * PER_THREAD
        for pid in server.worker_pids():
            # The bound holds at every moment (tests/test_engine_dispose.py checks that in
            # one process); here the last requests may still be ending when the clients
            # have their answers, so wait for the worker to settle, never past the bound.
            wait_for(lambda pid=pid: len(_held_databases(pid, root)) <= bound)
            assert 0 < len(_held_databases(pid, root)) <= bound
    finally:
        server.stop()
