"""One check of one database: the file (inspection.checking), or a PostgreSQL database of the
catalog (inspection.postgres), and its attachment files (nukeworks.attachments.integrity), and
the audit entry that records it.

`manage.py dbcheck` and the details page's background full check both run `check_database`.

The attachments are checked where they have a store of their own: a catalog database
(`databases/<label>/payloads/`) and a NukeWorks file elsewhere (`<stem>.payloads/` beside it,
dbselect.layout.payload_dir_for). A snapshot file shares its database's store and is checked
with that database; a SQLite file that is not a NukeWorks database has no attachments. Their
rows are read from the file itself, read-only, so a check opens no writable connection.

The only write is the audit entry (`database.check`), and only into a database that passed the
file check: a damaged b-tree or free list could make SQLite reuse a page still in use, so a
damaged file is never written to; its check is then only logged (the structured audit line).
A typed path gets an entry only when it is a NukeWorks database that could be selected (never a
snapshot, whose SHA-256 would no longer match its sidecar).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connections
from django.template.defaultfilters import filesizeformat
from django.utils.translation import ngettext

from audit import log as audit_log
from dbselect import engines, state
from dbselect.files.schema import SchemaState
from dbselect.files.validation import ValidationFailed, inspect_database
from dbselect.layout import is_archived_path, is_snapshot_path
from inspection import postgres
from inspection.checking import CheckResult, run_check
from inspection.targets import Target
from nukeworks.attachments import integrity

CHECK_ACTION = "database.check"

logger = logging.getLogger("nukeworks.inspection")

# (phase, done, total): phase "file" (SQLite's checks) or "attachments".
PhaseProgress = Callable[[str, int, int], None]


@dataclass
class DatabaseCheck:
    """The file's check and, where they apply, its attachments'."""

    target: Target
    file: CheckResult
    attachments: integrity.IntegrityReport | None
    # Why the attachments were not checked (not a problem), or why they could not be (one).
    attachments_skipped: str = ""
    attachments_error: str = ""

    @property
    def ok(self) -> bool:
        attachments_ok = self.attachments is None or self.attachments.ok
        return self.file.ok and attachments_ok and not self.attachments_error

    def attachments_summary(self) -> str:
        if self.attachments_error:
            return f"attachments not checked: {self.attachments_error}"
        if self.attachments is None:
            return f"attachments: {self.attachments_skipped}"
        report = self.attachments
        size = str(filesizeformat(report.bytes)).replace("\xa0", " ")
        return (
            f"attachments: {report.files} {ngettext('file', 'files', report.files)}, {size}; "
            "missing "
            f"{len(report.missing)}, corrupt {len(report.corrupt)}, extra {len(report.extra)}"
            + ("" if report.hashes_verified else " (contents not verified)")
        )

    def summary(self) -> str:
        return f"{self.file.mode}: {self.file.summary()}; {self.attachments_summary()}"

    def as_dict(self) -> dict[str, Any]:
        report = self.attachments
        return {
            "path": self.target.path,
            "label": self.target.label,
            "ok": self.ok,
            "file": self.file.as_dict(),
            "attachments": None
            if report is None
            else {
                "ok": report.ok,
                "store": str(report.store),
                "files": report.files,
                "bytes": report.bytes,
                "referenced_by_rows": report.referenced_by_rows,
                "referenced_by_snapshots": report.referenced_by_snapshots,
                "missing": report.missing[:100],
                "corrupt": report.corrupt[:100],
                "extra": report.extra[:100],
                "strays": report.strays[:100],
                "unreadable_snapshots": report.unreadable_snapshots[:100],
                "hashes_verified": report.hashes_verified,
            },
            "attachments_skipped": self.attachments_skipped,
            "attachments_error": self.attachments_error,
            "summary": self.summary(),
        }


def attachments_skip_reason(target: Target) -> str:
    """Return why the attachments of `target` are not checked, or "" when they are."""
    if target.label is not None:
        return ""
    if is_snapshot_path(target.path):
        return "a snapshot shares its database's attachment store: check the database itself"
    try:
        info = inspect_database(target.path)
    except ValidationFailed as exc:
        return f"not checked ({exc.reason})"
    if info.state is SchemaState.NOT_NUKEWORKS:
        return "not a NukeWorks database (no attachments)"
    return ""


def check_database(
    target: Target,
    *,
    full: bool,
    verify_hashes: bool = True,
    progress: PhaseProgress | None = None,
) -> DatabaseCheck:
    """Check `target`'s file, then its attachment files (see the module docstring)."""

    def file_progress(done: int, total: int) -> None:
        if progress is not None:
            progress("file", done, total)

    def attachment_progress(done: int, total: int) -> None:
        if progress is not None:
            progress("attachments", done, total)

    if target.entry is not None:
        # A PostgreSQL database of the catalog: its tables read, its foreign keys verified.
        file = postgres.run_check(target.entry, full=full, progress=file_progress)
    else:
        file = run_check(target.path, target.header, full=full, progress=file_progress)
    result = DatabaseCheck(target, file, None)
    skip = attachments_skip_reason(target)
    if skip:
        result.attachments_skipped = skip
        return result
    try:
        result.attachments = integrity.check(
            target.path,
            verify_hashes=verify_hashes,
            progress=attachment_progress,
            rows_from_file=True,
        )
    except Exception as exc:  # a damaged file or store: reported, never a crash
        result.attachments_error = str(exc) or type(exc).__name__
    return result


def auditable(target: Target) -> bool:
    """Return True when an audit entry may be written into `target`'s file at all."""
    if target.label is not None:
        return True
    if is_snapshot_path(target.path) or is_archived_path(target.path):
        return False
    try:
        return inspect_database(target.path).usable
    except ValidationFailed:
        return False


def record(
    check: DatabaseCheck,
    *,
    username: str | None = None,
    via: str = "",
) -> bool:
    """Audit `check` (`database.check`) in its database when it may be written; else only
    log it. Return True when the entry went into the database."""
    detail = check.summary() + (f"; via {via}" if via else "")
    outcome = "success" if check.ok else "failure"
    if not (check.file.file_ok and auditable(check.target)):
        # Logged only: the audit line, with no database active, so nothing is written.
        with state.override(None):
            audit_log.record(
                CHECK_ACTION,
                target=check.target.path,
                outcome=outcome,
                detail=detail + "; not written into the file (damaged, or not selectable)",
                username=username,
            )
        return False
    engine = engines.register(check.target.path)
    try:
        audit_log.record(
            CHECK_ACTION,
            target=check.target.path,
            outcome=outcome,
            detail=detail,
            username=username,
            using=engine.alias,
        )
    except DatabaseError:  # audit_log logs its own failures; nothing else to undo
        logger.exception("audit entry of a check not stored")
    finally:
        # A command or the queue's worker: keep no connection to the file open.
        connections[engine.alias].close()
    return True
