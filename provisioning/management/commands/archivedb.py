"""Archive a database (its whole folder moved to databases/.archive/), list or bring one back."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.template.defaultfilters import filesizeformat

from dbselect.layout import archive_dir
from provisioning import archive
from provisioning.management.commands.createdb import operator
from provisioning.service import ProvisioningError


class Command(BaseCommand):
    help = (
        "Archive the database <label>: its folder databases/<label>/ (file, snapshots, "
        "attachments) is moved whole to databases/.archive/<label>-<UTC time>/ once the "
        "requests working on it have finished, and it is no longer listed nor selectable. "
        "Nothing is ever deleted. --list shows the archived databases; --restore <folder> "
        "[--label X] brings one back (a taken label is refused). Operator databases are "
        "never archived."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("label", nargs="?", help="The database to archive.")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--list", action="store_true", help="List the archived databases.")
        action.add_argument(
            "--restore",
            metavar="FOLDER",
            help="Bring back the archived folder FOLDER (as --list shows it).",
        )
        parser.add_argument(
            "--label",
            dest="new_label",
            help="With --restore: the label to bring it back under (default: its own).",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        label = options["label"]
        try:
            if options["list"]:
                if label or options["new_label"]:
                    raise CommandError("--list takes no label.")
                self._list()
            elif options["restore"]:
                if label:
                    raise CommandError("--restore takes the archived folder; use --label X.")
                path = archive.unarchive(
                    options["restore"],
                    label=options["new_label"],
                    requested_by=operator(),
                    via="manage.py",
                )
                self.stdout.write(self.style.SUCCESS(f"Brought back {options['restore']}: {path}"))
            else:
                if not label:
                    raise CommandError("Name the database to archive (or --list, --restore).")
                if options["new_label"]:
                    raise CommandError("--label goes with --restore.")
                self._archive(label, options["interactive"])
        except ProvisioningError as exc:
            raise CommandError(exc.message) from None
        finally:
            connections.close_all()

    def _archive(self, label: str, interactive: bool) -> None:
        if interactive:
            answer = input(
                f"Archive '{label}'? Sessions working on it are moved off it. "
                "Type 'yes' to continue: "
            )
            if answer.strip().lower() != "yes":
                raise CommandError("Cancelled.")
        archived = archive.archive(label, requested_by=operator(), via="manage.py")
        self.stdout.write(
            self.style.SUCCESS(
                f"Archived '{label}' to {archived.path}. Bring it back with: manage.py archivedb "
                f"--restore {archived.name}"
            )
        )

    def _list(self) -> None:
        found = archive.list_archived()
        self.stdout.write(f"Archived databases in {archive_dir()}:")
        if not found:
            self.stdout.write("  (none)")
        for a in found:
            when = f"{a.archived_at:%Y-%m-%d %H:%M:%S} UTC" if a.archived_at else "?"
            problem = f"  [{a.problem}]" if a.problem else ""
            self.stdout.write(
                f"  {a.name}  archived {when}  {filesizeformat(a.size):>9}  "
                f"“{a.display_name}”{problem}"
            )
