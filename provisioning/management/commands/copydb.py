"""Duplicate a database into databases/<new-label>/, or restore one of its snapshots as new."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from dbselect import catalog, scanner
from dbselect.management.progress import ProgressBar
from provisioning import copies
from provisioning.management.commands.createdb import operator
from provisioning.service import ProvisioningError


def resolve_source(text: str) -> str:
    """Return the database path named by a catalog label or a path (or the target
    `postgresql:<label>` of a PostgreSQL database of the catalog)."""
    files = dict(scanner.database_files())
    if text in files:
        return files[text]
    if catalog.get(text) is not None:
        return catalog.target_for(text)
    if os.sep in text or text.endswith((".sqlite", ".sqlite3", ".db")) or os.path.isfile(text):
        return os.path.normpath(os.path.abspath(os.path.expanduser(text)))
    known = ", ".join(sorted(files)) or "none"
    raise CommandError(f"No database labelled {text!r} (known labels: {known}), nor a file.")


class Command(BaseCommand):
    help = (
        "Copy a database (a catalog label or a path) into databases/<new-label>/: a consistent "
        "copy taken while others keep working (SQLite's backup API), its attachments carried, "
        "with a new display name. --schema-only keeps the schema and the admins (with their "
        "passwords) and empties the domain. --from-snapshot NAME makes the new database from "
        "one of the source's snapshots instead (restore as new). A taken or invalid label is "
        "refused and nothing is created. A PostgreSQL database of the catalog is copied on its "
        "server (pg_dump | pg_restore into nw_<new-label>) and registered under the new label."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="Label of databases/<label>/, or a database path.")
        parser.add_argument("label", help="The new database's folder name under databases/.")
        parser.add_argument("--display-name", default="", help="Default: the new label.")
        parser.add_argument(
            "--schema-only",
            action="store_true",
            help="An empty domain (no companies, projects, attachments, tokens, sessions); "
            "the admins (staff or superusers) are kept with their passwords.",
        )
        parser.add_argument(
            "--from-snapshot",
            metavar="NAME",
            help="Make the new database from this snapshot of the source (as listed by "
            "manage.py snapshot list); the source itself is not read.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, source: str, label: str, **options: Any) -> None:
        path = resolve_source(source)
        try:
            with ProgressBar(
                self.stderr,
                "copying",
                enabled=ProgressBar.wanted(options),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
            ) as bar:
                if options["from_snapshot"]:
                    if options["schema_only"]:
                        raise CommandError("--schema-only and --from-snapshot do not go together.")
                    made = copies.restore_as_new(
                        path,
                        options["from_snapshot"],
                        label,
                        display_name=options["display_name"],
                        requested_by=operator(),
                        via="manage.py",
                        progress_callback=bar.update,
                    )
                else:
                    made = copies.duplicate(
                        path,
                        label,
                        display_name=options["display_name"],
                        schema_only=options["schema_only"],
                        requested_by=operator(),
                        via="manage.py",
                        progress_callback=bar.update,
                    )
        except ProvisioningError as exc:
            raise CommandError(exc.message) from None
        finally:
            connections.close_all()
        self.stdout.write(self.style.SUCCESS(f"Created {made.describe()}."))
        if made.carried.missing:
            self.stdout.write(
                self.style.WARNING(
                    f"{len(made.carried.missing)} attachment file(s) were already missing at the "
                    "source: manage.py dbcheck lists them."
                )
            )
        if made.schema_state == "needs_migration":
            self.stdout.write(
                f"The snapshot predates the latest migrations: manage.py migrate --database "
                f"{label} (or select it as an admin) brings it up to date."
            )
