"""manage.py dbcheck <label>: the database file's integrity and its attachment files."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import filesizeformat
from tqdm import tqdm

from audit import log as audit_log
from dbselect import engines, scanner
from nukeworks.attachments import integrity
from snapshots.sqlite_copy import check_integrity


class Command(BaseCommand):
    help = (
        "Check databases/<label>/: SQLite's quick_check of the file, and its attachment files "
        "(missing, corrupt = content no longer matching its SHA-256, extra = unreferenced). "
        "Exits with status 1 when something referenced is missing or damaged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("label", help="Label of databases/<label>/.")
        parser.add_argument(
            "--no-hashes",
            action="store_true",
            help="Do not read the attachment files to verify their SHA-256 (faster).",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            database = scanner.labelled_path(options["label"])
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        problem = check_integrity(database)
        self.stdout.write(f"Database file {database}: {problem or 'ok'}")
        bar = None if options["no_progress"] else tqdm(desc="attachments", unit="file")

        def progress(done: int, total: int) -> None:
            if bar is not None:
                bar.total = total
                bar.update(done - bar.n)

        report = integrity.check(
            database, verify_hashes=not options["no_hashes"], progress=progress
        )
        if bar is not None:
            bar.close()
        self.stdout.write(
            f"Attachments in {report.store}: {report.files} file(s), "
            f"{filesizeformat(report.bytes)}; referenced by rows {report.referenced_by_rows}, "
            f"by snapshots {report.referenced_by_snapshots}"
        )
        for title, items in (
            ("missing", report.missing),
            ("corrupt (content does not match its SHA-256)", report.corrupt),
            ("extra (referenced by nothing; `manage.py payloads gc` removes them)", report.extra),
            ("not payloads (foreign files in the store)", report.strays),
            ("unreadable snapshots", report.unreadable_snapshots),
        ):
            self.stdout.write(f"  {title}: {len(items)}")
            for item in items[:50]:
                self.stdout.write(f"    {item}")
        ok = problem is None and report.ok
        audit_log.record(
            "database.check",
            target=database,
            outcome="success" if ok else "failure",
            detail=f"file: {problem or 'ok'}; missing {len(report.missing)}, corrupt "
            f"{len(report.corrupt)}, extra {len(report.extra)}",
            username="manage.py",
            using=engines.register(database).alias,
        )
        if not ok:
            self.stdout.write(self.style.ERROR("Problems found."))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS("No problems found."))
