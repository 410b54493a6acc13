"""A healthy file is never refused because a writer or a checkpoint was busy with it.

Two other processes write the database without pause and checkpoint its WAL into the main
file every few commits (so the file's size and mtime change all the time, and its header is
rewritten while it grows). Meanwhile 100,000 requests go through Django's session, message
and database-selection middleware on four threads, each running a query on the bound
database. Not one may fall back, be sent to the selector or fail.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from dbselect import session, state
from dbselect.middleware import DatabaseSelectionMiddleware

REQUESTS = 100_000
THREADS = 4


# Run by a plain Python (no Django): write without pause, checkpoint every 5 commits.
WRITER = """
import sqlite3, sys, time
path, tag = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(path, timeout=30, isolation_level=None)
n = 0
while True:
    conn.execute(
        "INSERT INTO companies_company (name, country, website, is_vendor, is_owner, "
        "is_operator, is_constructor, notes, created_at, updated_at) "
        "VALUES (?, '', '', 0, 0, 0, 0, hex(randomblob(300)), '2026-01-01', '2026-01-01')",
        (f"{tag}-{n}",),
    )
    n += 1
    if n % 5 == 0:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
"""


def _view(request: HttpRequest) -> HttpResponse:
    alias = state.get_active_alias()
    with connections[alias].cursor() as cursor:
        # An index look-up: a count(*) would scan a table the writers grow all the time.
        cursor.execute("SELECT max(id) FROM companies_company")
        cursor.fetchone()
    return HttpResponse("ok")


def test_one_hundred_thousand_requests_under_writers_never_fall_back(make_database):
    path = str(Path(make_database(name="Busy")).resolve())
    stack = SessionMiddleware(MessageMiddleware(DatabaseSelectionMiddleware(_view)))
    factory = RequestFactory()
    outcomes: list[dict[str, int]] = []
    failures: list[str] = []

    def serve(count: int) -> None:
        seen: dict[str, int] = {}
        request = factory.get("/companies/")
        # One browser session per thread, pointing at the database.
        SessionMiddleware(lambda r: HttpResponse()).process_request(request)
        request.session[session.SELECTED_PATH] = path
        request.session[session.SELECTED_NAME] = "Busy"
        request.session.save()
        cookie = request.session.session_key
        for _ in range(count):
            req = factory.get("/companies/")
            req.COOKIES["sessionid"] = cookie
            try:
                response = stack(req)
            except Exception as exc:  # every failure is reported, by type
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            key = f"{response.status_code} {response.get('Location', '')}"
            seen[key] = seen.get(key, 0) + 1
        outcomes.append(seen)
        connections.close_all()

    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, path, f"writer{i}"]) for i in range(2)
    ]
    try:
        threads = [
            threading.Thread(target=serve, args=(REQUESTS // THREADS,)) for _ in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()
    total: dict[str, int] = {}
    for seen in outcomes:
        for key, count in seen.items():
            total[key] = total.get(key, 0) + count
    assert failures == []
    assert total == {"200 ": REQUESTS}
    conn = sqlite3.connect(path)
    try:
        written = conn.execute("SELECT count(*) FROM companies_company").fetchone()[0]
    finally:
        conn.close()
    assert written > 100, "the writers did not write while the requests ran"
