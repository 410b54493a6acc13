"""manage.py payloads gc|list <label>: the attachment files beside a database."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import filesizeformat

from audit import log as audit_log
from dbselect import catalog, engines, scanner
from nukeworks.attachments import integrity
from payloads.store import PayloadError
from snapshots.errors import SnapshotError


class Command(BaseCommand):
    help = (
        "Attachment files (payloads) of databases/<label>/ (a file's, or a PostgreSQL database's "
        "of the catalog): `gc` removes the files no row and no snapshot references (try "
        "--dry-run first); `list` shows the store's totals."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
        gc = actions.add_parser(
            "gc", help="Remove payload files nothing references (never one a snapshot needs)."
        )
        gc.add_argument("label", help="Label of databases/<label>/.")
        gc.add_argument("--dry-run", action="store_true", help="Only list what would be removed.")
        listing = actions.add_parser("list", help="Totals of the store and what references it.")
        listing.add_argument("label", help="Label of databases/<label>/.")

    def handle(self, *args: Any, **options: Any) -> None:
        label = options["label"]
        try:
            database = scanner.labelled_path(label)
        except LookupError as exc:
            if catalog.get(label) is None:
                raise CommandError(str(exc)) from None
            database = catalog.target_for(label)
        if options["action"] == "list":
            report = integrity.check(database, verify_hashes=False)
            self.stdout.write(
                f"{report.store}: {report.files} file(s), {filesizeformat(report.bytes)}; "
                f"referenced by rows: {report.referenced_by_rows}, by snapshots: "
                f"{report.referenced_by_snapshots}; unreferenced: {len(report.extra)}; "
                f"missing: {len(report.missing)}"
            )
            return
        dry_run = options["dry_run"]
        try:
            result = integrity.collect(database, dry_run=dry_run)
        except (SnapshotError, PayloadError) as exc:
            raise CommandError(str(exc)) from None
        verb = "Would remove" if dry_run else "Removed"
        for sha256 in result.removed:
            self.stdout.write(f"  {sha256}")
        for name in result.strays:
            self.stdout.write(f"  {name} (abandoned upload)")
        self.stdout.write(
            f"{verb} {len(result.removed)} unreferenced file(s), "
            f"{filesizeformat(result.bytes)}; kept {result.kept} referenced file(s)."
        )
        if not dry_run:
            audit_log.record(
                "payloads.gc",
                target=database,
                detail=f"removed {len(result.removed)} file(s), {result.bytes} bytes; "
                f"kept {result.kept}; abandoned uploads {len(result.strays)}",
                username="manage.py",
                using=engines.register(database).alias,
            )
