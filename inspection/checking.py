"""Is a database file sound? SQLite's `quick_check` (or `integrity_check`) and
`foreign_key_check`, read-only, with progress.

- `quick_check` walks every b-tree page (structure, cell sizes, free pages, NOT NULL and CHECK
  constraints) in O(pages); `integrity_check` (`full=True`) also checks that every index holds
  exactly the rows of its table, which takes longer (PRAGMA integrity_check reads the whole
  file: about 1 s per GiB here, more with many indexes).
- `foreign_key_check` lists the rows whose foreign key points at no row (NukeWorks runs with
  foreign keys on, so such rows come from outside: another program, a hand edit, a repair).

Both run in one read transaction of a read-only connection (dbselect's `open_readonly`: a
GuardedConnection with `trusted_schema=OFF` and `query_only=ON`), so they see one moment of a
live database while others keep writing (WAL) and nothing defined by the file runs.

Progress: SQLite calls its progress handler every few thousand virtual-machine steps; the
number of steps is not known in advance, so the total is an estimate from the file's page count
(measured on NukeWorks files: 220 to 370 steps per page for quick_check, 265 to 550 for
integrity_check, more with small rows), raised whenever the count comes near it. SQLite walks
the b-tree structure in a single step, so a bar may pause there on a large file before it
moves again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.utils.translation import ngettext

from dbselect.files.validation import SqliteHeader, open_readonly

# At most this many problems of each kind are kept (SQLite's own default for integrity_check).
MAX_LISTED = 100
_PROGRESS_STEPS = 5_000
_STEPS_PER_PAGE = {"quick_check": 300, "integrity_check": 420, "foreign_key_check": 20}

Progress = Callable[[int, int], None]


@dataclass
class ForeignKeyViolation:
    """A row whose foreign key names no row of the parent table."""

    table: str
    rowid: int | None
    parent: str
    # The foreign key's column(s) in `table`, when known.
    columns: str

    def __str__(self) -> str:
        where = f"row {self.rowid}" if self.rowid is not None else "a row"
        columns = f".{self.columns}" if self.columns else ""
        return f"{self.table} {where}: {self.table}{columns} -> {self.parent} (no such row)"


@dataclass
class CheckResult:
    """The outcome of one check of one file."""

    path: str
    # "quick_check" or "integrity_check".
    mode: str
    # SQLite's messages ("ok" is not listed); empty when the file is sound.
    integrity: list[str] = field(default_factory=list)
    foreign_keys: list[ForeignKeyViolation] = field(default_factory=list)
    # All violations, including those not listed (more than MAX_LISTED).
    foreign_key_count: int = 0
    # Why the check could not run to its end (the file cannot be opened, is too damaged to be
    # walked, is locked…); a problem as well.
    error: str = ""
    page_count: int = 0
    page_size: int = 0
    seconds: float = 0.0

    @property
    def file_ok(self) -> bool:
        """True when SQLite found the file's structure sound (foreign keys aside)."""
        return not self.integrity and not self.error

    @property
    def ok(self) -> bool:
        return self.file_ok and not self.foreign_key_count

    def summary(self) -> str:
        """One line: "ok", or what is wrong."""
        if self.ok:
            return "ok"
        parts = []
        if self.error:
            parts.append(self.error)
        if self.integrity:
            count = len(self.integrity)
            problems = ngettext("problem", "problems", count)
            parts.append(f"{self.mode}: {count} {problems}, first: {self.integrity[0]}")
        if self.foreign_key_count:
            violations = ngettext("violation", "violations", self.foreign_key_count)
            parts.append(f"{self.foreign_key_count} foreign key {violations}")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["file_ok"] = self.file_ok
        data["foreign_keys"] = [asdict(v) | {"text": str(v)} for v in self.foreign_keys]
        return data


class _Steps:
    """Counts SQLite's steps and reports them as progress against an estimated total."""

    def __init__(self, estimate: int, progress: Progress | None) -> None:
        self.done = 0
        self.total = max(estimate, _PROGRESS_STEPS)
        self.progress = progress

    def __call__(self) -> int:
        self.done += _PROGRESS_STEPS
        if self.done > self.total * 0.95:
            # The estimate was low: never show a check as done before it is.
            self.total = int(self.done / 0.9)
        if self.progress is not None:
            self.progress(self.done, self.total)
        return 0

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(self.total, self.total)


def run_check(
    path: str,
    header: SqliteHeader | None,
    *,
    full: bool = False,
    progress: Progress | None = None,
    busy_timeout: float = 30.0,
) -> CheckResult:
    """Check the file at `path` (header from inspection.targets); never raises sqlite3.Error:
    what prevented the check is the result's `error`."""
    mode = "integrity_check" if full else "quick_check"
    result = CheckResult(path=path, mode=mode)
    started = time.monotonic()
    try:
        conn = open_readonly(path, header, timeout=busy_timeout)
    except sqlite3.Error as exc:
        result.error = f"SQLite cannot open the file: {exc}"
        return result
    try:
        conn.execute("BEGIN")
        try:
            result.page_count = int(conn.execute("PRAGMA page_count").fetchone()[0])
            result.page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            per_page = _STEPS_PER_PAGE[mode] + _STEPS_PER_PAGE["foreign_key_check"]
            estimate = result.page_count * per_page
            steps = _Steps(estimate, progress)
            conn.set_progress_handler(steps, _PROGRESS_STEPS)
            try:
                _integrity(conn, mode, result)
                if not result.error:
                    _foreign_keys(conn, result)
            except sqlite3.Error as exc:
                result.error = f"SQLite stopped the check: {exc}"
            finally:
                conn.set_progress_handler(None, 0)
            steps.finish()
        finally:
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        result.error = result.error or f"SQLite cannot read the file: {exc}"
    finally:
        conn.close()
    result.seconds = time.monotonic() - started
    return result


def _integrity(conn: sqlite3.Connection, mode: str, result: CheckResult) -> None:
    rows = [str(row[0]) for row in conn.execute(f"PRAGMA {mode}({MAX_LISTED})").fetchall()]
    if rows == ["ok"]:
        return
    # One row may hold several messages, one per line, under "*** in database main ***".
    lines = [line.strip() for row in rows for line in row.splitlines()]
    result.integrity = [line for line in lines if line and not line.startswith("*** in database")]


def _foreign_keys(conn: sqlite3.Connection, result: CheckResult) -> None:
    columns: dict[tuple[str, int], str] = {}

    def columns_of(table: str, fkid: int) -> str:
        key = (table, fkid)
        if key not in columns:
            quoted = '"' + table.replace('"', '""') + '"'
            names = [
                str(row[3])
                for row in conn.execute(f"PRAGMA foreign_key_list({quoted})").fetchall()
                if int(row[0]) == fkid
            ]
            columns[key] = ", ".join(names)
        return columns[key]

    cursor = conn.execute("PRAGMA foreign_key_check")
    for table, rowid, parent, fkid in cursor:
        result.foreign_key_count += 1
        if len(result.foreign_keys) < MAX_LISTED:
            result.foreign_keys.append(
                ForeignKeyViolation(
                    str(table),
                    None if rowid is None else int(rowid),
                    str(parent),
                    columns_of(str(table), int(fkid)),
                )
            )
