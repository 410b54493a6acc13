"""Dispose inside one process: every thread, idle or busy; fd and memory bounds; concurrency."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections, connections, transaction

from dbselect import engines, state
from dbselect.engines import connections as tracking
from dbselect.models import SystemSetting
from tests import live


@pytest.fixture(autouse=True)
def _no_janitor(settings, tmp_path):
    """These tests play the server threads themselves; no janitor thread in the test process."""
    settings.DBSELECT = {
        **settings.DBSELECT,
        "ENGINE_JANITOR": False,
        "ENGINE_STORE_DIR": tmp_path / "engines",
    }


def open_files(path: Path | str) -> list[str]:
    """Return this process's open file descriptors on `path` and its -wal/-shm companions."""
    return live.open_files(os.getpid(), path)


class ServerThread(threading.Thread):
    """A thread that serves one "request" on `alias` the way a gunicorn gthread worker does."""

    def __init__(self, alias: str, *, finish_request: bool) -> None:
        super().__init__(daemon=True)
        self.alias = alias
        self.finish_request = finish_request
        self.opened = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        tracking.on_request_started(sender=WSGIHandler)
        connections[self.alias].ensure_connection()
        if self.finish_request:
            # A persistent connection (CONN_MAX_AGE > 0) outlives the request.
            tracking.on_request_finished(sender=WSGIHandler)
        self.opened.set()
        self.release.wait(10)
        if not self.finish_request:
            tracking.on_request_finished(sender=WSGIHandler)
        self.done.set()
        self.release.wait(10)


def test_dispose_closes_an_idle_threads_persistent_connection_at_once(make_database):
    path = str(make_database())
    alias = engines.register(path).alias
    server = ServerThread(alias, finish_request=True)
    server.start()
    assert server.opened.wait(10)
    assert open_files(path)
    assert engines.dispose(path)
    assert open_files(path) == []
    assert engines.get(path) is None
    server.release.set()
    server.join(10)


def test_a_workers_own_dispose_is_not_applied_again_to_connections_opened_since(make_database):
    """The dispose feed brings every request back to the worker that made it; that worker
    applied it when it made it, and must not close a connection a later request opened."""
    path = str(make_database())
    engines.apply_remote_disposals()  # this worker follows the feed from now on
    engines.dispose(path, everywhere=True)  # recorded for every worker, applied here
    alias = engines.register(path).alias
    server = ServerThread(alias, finish_request=True)
    server.start()
    assert server.opened.wait(10)
    assert open_files(path)

    assert engines.apply_remote_disposals() == 0

    assert open_files(path), "this worker's own dispose closed a connection opened after it"
    server.release.set()
    server.join(10)


def test_a_busy_thread_closes_its_connection_when_its_request_ends(make_database):
    path = str(make_database())
    alias = engines.register(path).alias
    server = ServerThread(alias, finish_request=False)
    server.start()
    assert server.opened.wait(10)
    engines.dispose(path)
    assert open_files(path), "the busy thread's connection must not be closed under it"
    server.release.set()
    assert server.done.wait(10)
    assert open_files(path) == []
    server.join(10)


def test_a_thread_reconnects_after_dispose_before_using_the_alias_again(make_database):
    path = str(make_database(companies=["Acme"]))
    engine = engines.open(path)
    first = connections[engine.alias]
    first.ensure_connection()
    raw = first.connection
    engines.dispose(path)
    engine = engines.open(path)
    connections[engine.alias].ensure_connection()
    assert connections[engine.alias].connection is not raw


def test_a_thread_keeps_at_most_the_configured_persistent_connections(make_database, settings):
    settings.DBSELECT = {**settings.DBSELECT, "MAX_CONNECTIONS_PER_THREAD": 3}
    files = [str(make_database(name=None)) for _ in range(6)]
    tracking.on_request_started(sender=WSGIHandler)
    for path in files:
        connections[engines.open(path).alias].ensure_connection()
    tracking.on_request_finished(sender=WSGIHandler)
    still_open = [p for p in files if open_files(p)]
    assert still_open == files[-3:]


def test_a_thread_never_holds_more_than_the_configured_connections_during_a_request(
    make_database, settings
):
    """The bound holds at every moment, not only once the request has ended.

    The server sends request_finished only after the client has the whole response, so a
    bound applied only then let a thread hold one file too many while its client moved on.
    """
    settings.DBSELECT = {**settings.DBSELECT, "MAX_CONNECTIONS_PER_THREAD": 3}
    files = [str(make_database(name=None)) for _ in range(6)]
    held_after_each = []
    tracking.on_request_started(sender=WSGIHandler)
    try:
        for path in files:
            connections[engines.open(path).alias].ensure_connection()
            held_after_each.append(len([p for p in files if open_files(p)]))
        assert [p for p in files if open_files(p)] == files[-3:]
    finally:
        tracking.on_request_finished(sender=WSGIHandler)
    assert held_after_each == [1, 2, 3, 3, 3, 3]


def test_making_room_never_closes_the_requests_database_or_an_open_transaction(
    make_database, settings
):
    settings.DBSELECT = {**settings.DBSELECT, "MAX_CONNECTIONS_PER_THREAD": 2}
    own, busy, *others = [str(make_database(name=None)) for _ in range(4)]
    own_alias, busy_alias = engines.open(own).alias, engines.open(busy).alias
    tracking.on_request_started(sender=WSGIHandler)
    try:
        with state.override(own_alias), transaction.atomic(using=busy_alias):
            SystemSetting.objects.using(busy_alias).create(key="written", value="before")
            connections[own_alias].ensure_connection()
            for path in others:
                connections[engines.open(path).alias].ensure_connection()
            assert open_files(own) and open_files(busy)
            SystemSetting.objects.using(busy_alias).create(key="also", value="after")
    finally:
        tracking.on_request_finished(sender=WSGIHandler)
    conn = sqlite3.connect(busy)
    try:
        keys = {row[0] for row in conn.execute("SELECT key FROM system_settings")}
    finally:
        conn.close()
    assert {"written", "also"} <= keys
    assert len([p for p in [own, busy, *others] if open_files(p)]) == 2


def test_memory_per_registered_alias_is_small():
    """Report (and bound) what one more alias costs: its settings dict and Engine."""
    count = 500
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(count):
        engines.register(f"/nonexistent/memory/{i}/nukeworks.sqlite")
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    per_alias = grown / count
    print(f"memory per registered alias: {per_alias / 1024:.1f} KiB")
    assert per_alias < 32 * 1024


def test_concurrent_registration_dispose_and_close_old_connections_raise_nothing(
    make_database,
):
    """16 threads for 5 s: register, open, dispose, close_old_connections, close_all."""
    paths = [str(make_database(name=None)) for _ in range(4)]
    errors: list[BaseException] = []
    stop = time.monotonic() + 5.0
    counter = iter(range(10**9))

    def guarded(fn):
        def run() -> None:
            try:
                while time.monotonic() < stop:
                    fn()
            except BaseException as exc:  # the test reports any failure
                errors.append(exc)
            finally:
                connections.close_all()

        return run

    def registrar() -> None:
        engines.register(f"/nonexistent/hammer16/{next(counter)}.sqlite")

    def opener() -> None:
        tracking.on_request_started(sender=WSGIHandler)
        try:
            path = random.choice(paths)
            connections[engines.open(path).alias].ensure_connection()
            close_old_connections()
        finally:
            tracking.on_request_finished(sender=WSGIHandler)
            close_old_connections()

    def disposer() -> None:
        engines.dispose(random.choice(paths))
        time.sleep(0.001)

    def closer() -> None:
        for path in paths:
            connections[engines.register(path).alias].ensure_connection()
        close_old_connections()
        connections.close_all()

    workers = [registrar, opener, disposer, closer] * 4
    threads = [threading.Thread(target=guarded(fn)) for fn in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
