"""The details page's full check: a job of the task queue, its progress and its last result.

An admin asks for it on /database/; the request only queues the job (`start`) and audits it.
The queue's worker (`manage.py run_huey`) runs `run`: `integrity_check`, `foreign_key_check`
and the attachment files with their SHA-256 (inspection.service.check_database, like
`manage.py dbcheck --full`), then audits the outcome in the database.

Its state lives in one small JSON file per database under the instance folder, never in the
database itself (the audit entry aside), written atomically (a temporary file renamed over it):

    instance/inspection/checks/<key>.json   {"state": "queued|running|done|failed", "job": …,
                                             "phase", "done", "total", "result": {…}, …}
    instance/inspection/checks/<key>.lock   flock()ed by the worker while the job runs

`<key>` is derived from the database's path. The file stays after the job ends, so the page
shows the last result until the next check replaces it. A file that says "running" while
nobody holds the lock belongs to a worker that died: it reads as "interrupted".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from dbselect.files import locks
from inspection import service
from inspection.targets import of_path

logger = logging.getLogger("nukeworks.inspection")

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
INTERRUPTED = "interrupted"
IN_PROGRESS = (QUEUED, RUNNING)
# Seconds between two writes of the progress (the page polls once a second).
WRITE_INTERVAL = 0.25
MAX_STATUS_BYTES = 1 << 20


@dataclass
class CheckStatus:
    """The full check of one database: queued, running, or its last result."""

    path: str
    job: str
    state: str
    requested_by: str = ""
    requested_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    # "file" (SQLite's checks) or "attachments", while running.
    phase: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    # inspection.service.DatabaseCheck.as_dict() once done.
    result: dict[str, Any] | None = field(default=None)

    @property
    def in_progress(self) -> bool:
        return self.state in IN_PROGRESS

    @property
    def percent(self) -> int:
        if self.state == DONE:
            return 100
        if not self.total:
            return 0
        return max(0, min(100, int(self.done * 100 / self.total)))

    @property
    def ok(self) -> bool | None:
        return None if self.result is None else bool(self.result.get("ok"))

    @property
    def finished(self) -> str:
        """When it ended, for people (server time, ISO)."""
        if not self.finished_at:
            return ""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.finished_at))

    def as_json(self) -> dict[str, Any]:
        """What the page's script polls (no result details: the page shows them)."""
        return {
            "state": self.state,
            "job": self.job,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "percent": self.percent,
            "message": self.message,
            "ok": self.ok,
            "finished": self.finished,
            "summary": (self.result or {}).get("summary", ""),
        }


def checks_dir() -> Path:
    """Return instance/inspection/checks/."""
    return Path(settings.INSTANCE_DIR) / "inspection" / "checks"


def _key(path: str) -> str:
    return hashlib.sha256(os.fsencode(path)).hexdigest()[:32]


def status_file(path: str) -> Path:
    return checks_dir() / f"{_key(path)}.json"


def _lock_file(path: str) -> Path:
    return checks_dir() / f"{_key(path)}.lock"


def _write(status: CheckStatus) -> None:
    folder = checks_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = status_file(status.path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, json.dumps(asdict(status), sort_keys=True).encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(temporary, target)


def _running_somewhere(path: str) -> bool:
    """Return True while a worker holds the job lock of `path`'s check."""
    return locks.held_elsewhere(_lock_file(path))


def read(path: str) -> CheckStatus | None:
    """Return the check of the database at `path` (None when none was ever asked for)."""
    try:
        raw = status_file(path).read_bytes()[:MAX_STATUS_BYTES]
        data = json.loads(raw.decode("utf-8"))
        known = {k: data[k] for k in CheckStatus.__dataclass_fields__ if k in data}
        status = CheckStatus(**known)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("unreadable check status for %s: %s", path, exc)
        return None
    if status.path != path:
        return None
    if status.state == RUNNING and not _running_somewhere(path):
        status.state = INTERRUPTED
        status.message = (
            "The check was interrupted (its worker stopped before it ended); run it again."
        )
    return status


def start(path: str, *, requested_by: str) -> tuple[CheckStatus, bool]:
    """Queue a full check of `path`; return (its status, True) or, when one is already queued
    or running, (that one, False)."""
    from inspection import tasks  # the queue (huey) only where a job is queued

    checks_dir().mkdir(parents=True, exist_ok=True)
    with locks.flocked(checks_dir() / ".start.lock", exclusive=True, timeout=10):
        current = read(path)
        if current is not None and current.in_progress:
            return current, False
        status = CheckStatus(
            path=path,
            job=uuid.uuid4().hex,
            state=QUEUED,
            requested_by=requested_by,
            requested_at=time.time(),
            message="Waiting for the queue's worker.",
        )
        _write(status)
        tasks.enqueue(path, status.job)
    return status, True


def run(path: str, job: str) -> str:
    """Run the queued check `job` of `path` (the queue's worker); return its end state."""
    checks_dir().mkdir(parents=True, exist_ok=True)
    try:
        with locks.flocked(_lock_file(path), exclusive=True, timeout=0):
            return _run_locked(path, job)
    except locks.LockTimeout:
        logger.warning("check %s of %s skipped: another check of it is running", job, path)
        return "busy"


def _run_locked(path: str, job: str) -> str:
    status = read(path)
    if status is None or status.job != job:
        # Superseded by a later request (or its status file removed): nothing to do.
        return "superseded"
    status.state, status.started_at = RUNNING, time.time()
    status.message = "Checking the database file (integrity_check)."
    _write(status)
    last_write = 0.0

    def progress(phase: str, done: int, total: int) -> None:
        nonlocal last_write
        status.phase, status.done, status.total = phase, done, total
        if phase == "attachments":
            status.message = f"Verifying attachment files ({done} / {total})."
        now = time.monotonic()
        if now - last_write >= WRITE_INTERVAL:
            last_write = now
            _write(status)

    try:
        target = of_path(path)
        check = service.check_database(target, full=True, verify_hashes=True, progress=progress)
    except Exception as exc:  # TargetError, SQLite, the store: the status file says which
        logger.exception("check %s of %s failed", job, path)
        status.state, status.finished_at = FAILED, time.time()
        status.message = f"The check could not run: {exc}"
        _write(status)
        return FAILED
    status.result = check.as_dict()
    status.state, status.finished_at = DONE, time.time()
    status.message = "No problems found." if check.ok else "Problems found."
    _write(status)
    try:
        service.record(check, username=status.requested_by or None, via=f"details page, job {job}")
    except Exception:  # the result stands even when the audit entry cannot be written
        logger.exception("audit entry of check %s of %s not written", job, path)
    return DONE
