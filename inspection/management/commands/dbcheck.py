"""manage.py dbcheck <label|path> [--full]: is a database file (or a PostgreSQL database of
the catalog) sound, and its attachments?"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import filesizeformat
from tqdm import tqdm

from inspection import service
from inspection.targets import TargetError, resolve

# Listed per kind of problem (the rest are counted).
SHOWN = 50


class Command(BaseCommand):
    help = (
        "Check a database: SQLite's quick_check of the file (integrity_check with --full, which "
        "also compares every index with its table), foreign_key_check (rows pointing at no row), "
        "and its attachment files (missing, corrupt = content no longer matching its SHA-256, "
        "extra = unreferenced). The argument is a label of databases/<label>/ or the path of a "
        "file (opened read-only, never created), or the label of a PostgreSQL database of the "
        "catalog: every table read to its end (--full: every value, TOAST included), no "
        "foreign key NOT VALID, no row pointing at a missing row (the SQLite page checks do not "
        "apply). Exits with status 1 when anything is wrong."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("database", help="A label of databases/<label>/, or a file's path.")
        parser.add_argument(
            "--full",
            action="store_true",
            help="PRAGMA integrity_check instead of quick_check (slower: checks every index).",
        )
        parser.add_argument(
            "--no-hashes",
            action="store_true",
            help="Do not read the attachment files to verify their SHA-256 (faster).",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bars.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            target = resolve(options["database"])
        except TargetError as exc:
            raise CommandError(str(exc)) from None
        bars: dict[str, tqdm] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if options["no_progress"]:
                return
            bar = bars.get(phase)
            if bar is None:
                for other in bars.values():
                    other.close()
                bar = bars[phase] = _bar(phase, full=options["full"], kind=target.kind)
            bar.total = total
            bar.update(done - bar.n)

        try:
            check = service.check_database(
                target,
                full=options["full"],
                verify_hashes=not options["no_hashes"],
                progress=progress,
            )
        finally:
            for bar in bars.values():
                bar.close()
        self._report(check)
        stored = service.record(check, username="manage.py", via="manage.py dbcheck")
        if not stored:
            self.stdout.write(
                "  (audit: logged only; nothing is written into a damaged or unselectable file)"
            )
        if not check.ok:
            self.stdout.write(self.style.ERROR("Problems found."))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS("No problems found."))

    def _report(self, check: service.DatabaseCheck) -> None:
        file = check.file
        where = f" (label {check.target.label})" if check.target.label else ""
        if check.target.is_postgres:
            entry = check.target.entry
            assert entry is not None
            self.stdout.write(f"PostgreSQL database {entry.url.server()}{where}: {file.summary()}")
            self.stdout.write(
                f"  {file.mode} (every table read"
                f"{', every value' if file.mode == 'full_read_check' else ''}): "
                f"{'ok' if not file.integrity and not file.error else 'PROBLEMS'} "
                f"({file.seconds:.2f} s)"
            )
        else:
            self.stdout.write(f"Database file {check.target.path}{where}: {file.summary()}")
            size = filesizeformat(file.page_count * file.page_size)
            self.stdout.write(
                f"  {file.mode}: {'ok' if not file.integrity and not file.error else 'PROBLEMS'} "
                f"({file.page_count} pages, {size}, {file.seconds:.2f} s)"
            )
        if file.error:
            self.stdout.write(f"    {file.error}")
        for line in file.integrity[:SHOWN]:
            self.stdout.write(f"    {line}")
        if file.error:
            self.stdout.write("  foreign_key_check: not run")
        else:
            self.stdout.write(
                f"  foreign_key_check: {file.foreign_key_count or 'ok'}"
                + (" violation(s)" if file.foreign_key_count else "")
            )
        for violation in file.foreign_keys[:SHOWN]:
            self.stdout.write(f"    {violation}")
        if file.foreign_key_count > SHOWN:
            self.stdout.write(f"    … and {file.foreign_key_count - SHOWN} more")
        self._attachments(check)

    def _attachments(self, check: service.DatabaseCheck) -> None:
        if check.attachments_error:
            self.stdout.write(f"Attachments: could not be checked: {check.attachments_error}")
            return
        report = check.attachments
        if report is None:
            self.stdout.write(f"Attachments: {check.attachments_skipped}")
            return
        self.stdout.write(
            f"Attachments in {report.store}: {report.files} file(s), "
            f"{filesizeformat(report.bytes)}; referenced by rows {report.referenced_by_rows}, "
            f"by snapshots {report.referenced_by_snapshots}"
            + ("" if report.hashes_verified else " (contents not verified: --no-hashes)")
        )
        for title, items in (
            ("missing", report.missing),
            ("corrupt (content does not match its SHA-256)", report.corrupt),
            ("extra (referenced by nothing; `manage.py payloads gc` removes them)", report.extra),
            ("not payloads (foreign files in the store)", report.strays),
            ("unreadable snapshots", report.unreadable_snapshots),
        ):
            self.stdout.write(f"  {title}: {len(items)}")
            for item in items[:SHOWN]:
                self.stdout.write(f"    {item}")


def _bar(phase: str, *, full: bool, kind: str = "sqlite") -> tqdm:
    if phase == "file" and kind != "sqlite":
        # PostgreSQL: tables read and foreign keys verified, counted one by one.
        return tqdm(desc="full_read_check" if full else "read_check", unit="step")
    if phase == "file":
        desc = "integrity_check" if full else "quick_check"
        # SQLite's steps against an estimate (inspection.checking): shown as a percentage.
        return tqdm(desc=desc, total=100, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
    return tqdm(desc="attachments", unit="file")
