"""Nothing acknowledged is ever lost, under the shipped server and while things go wrong.

gunicorn runs with nukeworks/gunicorn.conf.py as shipped (2 gthread workers x 4 threads,
connections closed after each request). Eight signed-in browser sessions create companies on
one database for 30 seconds; a creation is *acknowledged* when the server answers with the
redirect to the new company's page. Each run adds one fault: none, an admin's snapshot, an
admin's restore, a dispose of the engine in every worker, or `kill -9` of a worker. Then the
server stops and the file is read with plain sqlite3:

- every acknowledged company is in the file (after a restore: in the file, or, if it was
  acknowledged before the restore began, in the safety snapshot the restore took first);
- `PRAGMA integrity_check` is `ok` (and so for every snapshot taken during the run);
- no request was sent back to the selector or another database (no false fallback).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import company_names
from tests.live import Browser, GunicornServer, set_password

WRITERS = 8
SECONDS = 30.0
# When, into the run, the fault happens (a restore: its snapshot at the first, itself at the
# second).
FAULT_AT = (10.0, 20.0)
COMPANY_URL = re.compile(r"/companies/(\d+)/$")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@dataclass
class Tally:
    """What one writer saw."""

    acknowledged: dict[str, float] = field(default_factory=dict)  # name -> time of the answer
    ids: dict[str, int] = field(default_factory=dict)  # name -> id in the redirect Location
    refused: int = 0  # a 503 page: the user was told the change was not saved
    errors: int = 0  # no answer at all (a killed worker's connection)
    fallbacks: list[str] = field(default_factory=list)


def _writer(server: GunicornServer, db: Path, tag: str, deadline: float, tally: Tally) -> None:
    browser = Browser(server.base)
    assert browser.select(db)[0] == 200
    # One account per writer: the sign-in rate limit counts attempts per username.
    status, page = browser.sign_in(f"writer-{tag}", "pw-writer-123")
    assert f"Log out writer-{tag}" in page, status
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(browser.jar), _NoRedirect
    )
    n = 0
    while time.monotonic() < deadline:
        name = f"{tag}-{n}"
        n += 1
        form = {
            "csrfmiddlewaretoken": browser.cookie("csrftoken") or "",
            "name": name,
            "country": "Durability",
        }
        request = urllib.request.Request(
            server.base + "/companies/new/",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with opener.open(request, timeout=60) as response:
                status, location = response.status, ""
        except urllib.error.HTTPError as exc:
            status, location = exc.code, exc.headers.get("Location", "")
            exc.read()
        except OSError:
            tally.errors += 1
            time.sleep(0.05)
            continue
        found = COMPANY_URL.search(location) if status == 302 else None
        if found:
            tally.acknowledged[name] = time.monotonic()
            tally.ids[name] = int(found.group(1))
        elif status == 503:
            tally.refused += 1
        else:
            tally.fallbacks.append(f"{status} {location}")


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def _rows_at(path: Path, ids: list[int]) -> dict[int, str]:
    """Return the name stored at each of `ids` in the file (ids with no row are left out)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            row[0]: row[1]
            for i in ids
            for row in conn.execute("SELECT id, name FROM companies_company WHERE id = ?", (i,))
        }
    finally:
        conn.close()


def _lost_report(
    db: Path, lost: set[str], acknowledged: dict[str, float], ids: dict[str, int], start: float
) -> str:
    """Describe each lost write: its id, when it was acknowledged, what the file holds there.

    The id reused by another name means the committed transaction was undone (the WAL lost or
    reset under a writer); no row there means something else (a gap).
    """
    if not lost:
        return ""
    rows = _rows_at(db, [ids[n] for n in lost])
    lines = []
    for name in sorted(lost, key=lambda n: acknowledged[n]):
        at = rows.get(ids[name])
        held = f"held by {at!r} (id reused: commit undone)" if at is not None else "no row (gap)"
        lines.append(
            f"{name}: id {ids[name]}, acknowledged at +{acknowledged[name] - start:.3f}s, {held}"
        )
    return "\n".join(lines)


def _server_log_tail(server: GunicornServer, chars: int = 4000) -> str:
    try:
        return server.log.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(no server log: {exc})"


def _snapshots(db: Path) -> set[Path]:
    folder = db.parent / "snapshots"
    return set(folder.glob("*.sqlite")) if folder.is_dir() else set()


@dataclass
class Run:
    """One run's database, the admin's session and what the fault did."""

    server: GunicornServer
    db: Path
    admin: Browser
    events: list[tuple[str, float, float]] = field(default_factory=list)
    restored: set[Path] = field(default_factory=set)


def _fault_snapshot(run: Run) -> None:
    status, page = run.admin.post("/snapshots/create", {"note": "during the writes"})
    assert status == 200 and "Snapshot" in page


def _fault_restore(run: Run) -> None:
    [snapshot] = run.restored
    status, page = run.admin.post(f"/snapshots/{snapshot.name}/restore", {})
    assert status == 200 and "The database was restored" in page, page[-2000:]


def _fault_dispose(run: Run) -> None:
    status, page = run.admin.post("/admin/engines/dispose", {"path": str(run.db)})
    assert status == 200 and "Disposed" in page


def _fault_kill(run: Run) -> None:
    os.kill(run.server.worker_pids()[0], signal.SIGKILL)


FAULTS = {
    "no fault": None,
    "snapshot": _fault_snapshot,
    "restore": _fault_restore,
    "dispose": _fault_dispose,
    "kill -9 of a worker": _fault_kill,
}


@pytest.fixture
def run(tmp_path, make_database):
    """The shipped server and a database with a writer and an admin signed in."""
    db = Path(
        os.path.realpath(
            make_database(
                name="Durable",
                users=[("boss", "pw-boss-123", True)]
                + [(f"writer-w{i}", "pw-writer-123", False) for i in range(WRITERS)],
            )
        )
    )
    set_password(db, "boss", "pw-boss-123")
    for i in range(WRITERS):
        set_password(db, f"writer-w{i}", "pw-writer-123")
    # The admin's database is an operator database: the dispose fault uses the engines page.
    server = GunicornServer(
        tmp_path / "server",
        workers=2,
        threads=4,
        env={"NUKEWORKS_OPERATOR_DATABASES": str(db)},
    ).start()
    admin = Browser(server.base)
    assert admin.select(db)[0] == 200
    assert "Log out boss" in admin.sign_in("boss", "pw-boss-123")[1]
    try:
        yield Run(server, db, admin)
    finally:
        server.stop()


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_every_acknowledged_write_survives(run, fault):
    before = _snapshots(run.db)
    start = time.monotonic()
    deadline = start + SECONDS
    tallies = [Tally() for _ in range(WRITERS)]
    writers = [
        threading.Thread(target=_writer, args=(run.server, run.db, f"w{i}", deadline, tallies[i]))
        for i in range(WRITERS)
    ]
    for thread in writers:
        thread.start()
    action = FAULTS[fault]
    if action is not None:
        for at in FAULT_AT:
            time.sleep(max(0.0, start + at - time.monotonic()))
            if fault == "restore" and not run.restored:
                # First the snapshot that will be restored, taken while everybody writes.
                _fault_snapshot(run)
                run.restored = _snapshots(run.db) - before
                continue
            began = time.monotonic()
            action(run)
            run.events.append((fault, began, time.monotonic()))
    for thread in writers:
        thread.join()
    run.server.stop()

    acknowledged: dict[str, float] = {}
    ids: dict[str, int] = {}
    for tally in tallies:
        acknowledged.update(tally.acknowledged)
        ids.update(tally.ids)
    present = company_names(run.db)
    lost = set(acknowledged) - present
    new_snapshots = _snapshots(run.db) - before - run.restored
    safety_names: set[str] = set()
    if fault == "restore":
        ended = run.events[0][2]
        [safety] = new_snapshots
        safety_names = company_names(safety)
        # Acknowledged after the restore finished: in the restored file itself.
        assert {n for n, t in acknowledged.items() if t > ended} <= present
        # Acknowledged before: in the safety snapshot the restore took (nothing in between).
        lost -= safety_names
    figures = {
        "fault": fault,
        "acknowledged": len(acknowledged),
        "present": len(set(acknowledged) & (present | safety_names)),
        "lost": len(lost),
        "refused (503)": sum(t.refused for t in tallies),
        "no answer": sum(t.errors for t in tallies),
        "integrity": _integrity(run.db),
    }
    print("durability", figures)
    assert len(acknowledged) > WRITERS * 10, figures
    # The message (only built on failure): each lost write, and the server's log.
    assert lost == set(), (
        f"{figures}\nlost writes:\n{_lost_report(run.db, lost, acknowledged, ids, start)}"
        f"\nserver log ({run.server.log}), tail:\n{_server_log_tail(run.server)}"
    )
    assert figures["integrity"] == "ok"
    for snapshot in new_snapshots:
        assert _integrity(snapshot) == "ok", snapshot
    fallbacks = [f for t in tallies for f in t.fallbacks]
    assert fallbacks == [], (figures, sorted(set(fallbacks)), len(fallbacks))
    if fault != "kill -9 of a worker":
        assert figures["no answer"] == 0, figures
