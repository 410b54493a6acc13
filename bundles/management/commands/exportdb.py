"""manage.py exportdb <label> -o file.zip: a database's domain data and attachments as a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from audit import log as audit_log
from bundles import package
from bundles.management.commands._common import labelled_database, operator
from bundles.progress import rows_bar
from dbselect import engines


class Command(BaseCommand):
    help = (
        "Export the companies and projects with their attachments (and with --users the users) "
        "of databases/<label>/nukeworks.sqlite (or of the PostgreSQL database of the catalog "
        "labelled <label>) as a bundle: a .zip (or a folder when the output "
        "does not end in .zip). With a name and a version, the bundle is a seed package."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # --version names the package's version here, replacing Django's --version.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "label", help="Folder name of the database under databases/, or a catalog label."
        )
        parser.add_argument(
            "-o", "--output", required=True, help="The bundle to write (never overwritten)."
        )
        parser.add_argument("--name", help="Package name (default: the label).")
        parser.add_argument(
            "--version", dest="package_version", default="1", help="Package version (default 1)."
        )
        parser.add_argument("--description", default="", help="One line about the content.")
        parser.add_argument(
            "--users", action="store_true", help="Include the users (with password hashes)."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        label = options["label"]
        path = labelled_database(label)
        alias = engines.register(path).alias
        enabled = not options["no_progress"] and options.get("verbosity", 1) >= 1
        try:
            with rows_bar("Export", self.stderr, enabled) as progress:
                bundle = package.export(
                    alias,
                    Path(options["output"]),
                    name=options["name"] or label,
                    version=options["package_version"],
                    description=options["description"],
                    include_users=options["users"],
                    progress=progress,
                )
        except package.BundleError as exc:
            raise CommandError(str(exc)) from None
        finally:
            connections[alias].close()
        audit_log.record(
            "bundle.export",
            target=str(bundle.path),
            detail=f"{bundle.ref} {bundle.counts}",
            username=operator(),
            using=alias,
        )
        connections[alias].close()
        counts = ", ".join(f"{n} {label.split('.')[1]} rows" for label, n in bundle.counts.items())
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported {label} as {bundle.ref} to {bundle.path} ({counts}; "
                f"checksum {bundle.checksum})"
            )
        )
