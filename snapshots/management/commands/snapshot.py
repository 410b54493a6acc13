"""manage.py snapshot create|list|restore|delete|prune — snapshots for operators."""

from __future__ import annotations

import getpass
import os
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.template.defaultfilters import filesizeformat

from dbselect import catalog, scanner
from dbselect.catalog import postgres
from dbselect.files.validation import ValidationFailed, inspect_database
from dbselect.management.progress import ProgressBar
from snapshots import service


def _operator() -> str:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "operator"
    return f"{who} (manage.py)"


class Command(BaseCommand):
    help = (
        "Create, list, restore, delete or prune the snapshots of one database, chosen by "
        "--database <label> (databases/<label>/nukeworks.sqlite, a PostgreSQL database of the "
        "catalog, or a configured alias) or --path <file>."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))

        def target(sub: ArgumentParser) -> None:
            where = sub.add_mutually_exclusive_group(required=True)
            where.add_argument(
                "--database",
                help="Label of databases/<label>/, of a PostgreSQL catalog entry, or an alias.",
            )
            where.add_argument("--path", help="Path of the database file.")

        def confirmation(sub: ArgumentParser) -> None:
            sub.add_argument(
                "--noinput",
                "--no-input",
                action="store_false",
                dest="interactive",
                help="Do not ask for confirmation.",
            )

        create = actions.add_parser("create", help="Snapshot the database now.")
        target(create)
        create.add_argument("--note", default="", help="Why this snapshot is taken.")
        create.add_argument("--no-progress", action="store_true", help="No progress bar.")

        listing = actions.add_parser("list", help="List the snapshots, newest first.")
        target(listing)

        restore = actions.add_parser("restore", help="Restore the database to a snapshot.")
        restore.add_argument("name", help="Snapshot file name (as listed).")
        target(restore)
        confirmation(restore)
        restore.add_argument(
            "--allow-old-schema",
            action="store_true",
            help="Restore a snapshot taken before the latest migrations (migrate afterwards).",
        )
        restore.add_argument("--no-progress", action="store_true", help="No progress bar.")

        delete = actions.add_parser("delete", help="Delete a snapshot.")
        delete.add_argument("name", help="Snapshot file name (as listed).")
        target(delete)
        confirmation(delete)

        prune = actions.add_parser(
            "prune", help="Apply the database's max_snapshots and retention_days now."
        )
        target(prune)
        confirmation(prune)
        prune.add_argument("--dry-run", action="store_true", help="Only list what would go.")

    def handle(self, *args: Any, **options: Any) -> None:
        database = self._resolve(options.get("database"), options.get("path"))
        action = options["action"]
        try:
            getattr(self, f"_{action}")(database, options)
        except service.SnapshotError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            connections.close_all()

    # Which database ---------------------------------------------------------------------

    def _resolve(self, label: str | None, path: str | None) -> str:
        entry = catalog.get(label) if label and not path else None
        if entry is not None:
            # A PostgreSQL database of the catalog: its target; its URL is never printed.
            try:
                postgres.inspect(entry.target, entry.url)
            except ValidationFailed as exc:
                raise CommandError(f"{entry.target}: {exc.reason}") from None
            return entry.target
        if path:
            database = os.path.normpath(os.path.abspath(os.path.expanduser(path)))
        elif label in dict(scanner.database_files()):
            database = dict(scanner.database_files())[label]
        elif label in connections.settings and connections.settings[label].get("NAME"):
            database = os.path.normpath(os.path.abspath(str(connections.settings[label]["NAME"])))
        else:
            known = ", ".join(lbl for lbl, _ in scanner.database_files()) or "none"
            raise CommandError(f"No database labelled {label!r} (known labels: {known}).")
        try:
            inspect_database(database)
        except ValidationFailed as exc:
            raise CommandError(f"{database}: {exc.reason}") from None
        return database

    # Actions ----------------------------------------------------------------------------

    def _create(self, database: str, options: dict[str, Any]) -> None:
        with self._progress("Snapshot", options) as bar:
            snapshot = service.create_snapshot(
                database, note=options["note"], username=_operator(), progress=bar.callback
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {snapshot.path} ({filesizeformat(snapshot.size)}, "
                f"sha256 {snapshot.sha256})"
            )
        )

    def _list(self, database: str, options: dict[str, Any]) -> None:
        scanned = service.scan_folder(database)
        self.stdout.write(f"Snapshots of {database} in {service.folder_for(database)}:")
        if not scanned.snapshots:
            self.stdout.write("  (none)")
        for s in scanned.snapshots:
            kind = "" if s.kind == service.Kind.MANUAL else f" [{s.kind_label}]"
            self.stdout.write(
                f"  {s.name}  {s.created_at:%Y-%m-%d %H:%M:%S} UTC  {filesizeformat(s.size):>9}  "
                f"{s.created_by or '-'}{kind}  {s.note}"
            )
        if scanned.ignored:
            self.stdout.write(
                self.style.WARNING(
                    "Ignored in the snapshots folder (not snapshots: never listed, restored or "
                    "deleted):"
                )
            )
            for entry in scanned.ignored:
                self.stdout.write(f"  {entry}")

    def _restore(self, database: str, options: dict[str, Any]) -> None:
        snapshot = service.get_snapshot(database, options["name"])
        self._confirm(
            options,
            f"Restore {database} to {snapshot.name} (taken {snapshot.created_at:%Y-%m-%d %H:%M} "
            "UTC)? A safety snapshot is taken first.",
        )
        with self._progress("Restore", options) as bar:
            result = service.restore_snapshot(
                database,
                snapshot.name,
                username=_operator(),
                progress=bar.callback,
                allow_old_schema=options["allow_old_schema"],
            )
        if result.safety is None:
            self.stdout.write(
                self.style.WARNING(
                    f"Restored {database} to {result.restored.name}, but the safety snapshot "
                    "failed: the database as it was is kept on its PostgreSQL server as "
                    f"{result.kept_database}."
                )
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored {database} to {result.restored.name}. "
                f"Safety snapshot: {result.safety.path}"
            )
        )

    def _delete(self, database: str, options: dict[str, Any]) -> None:
        snapshot = service.get_snapshot(database, options["name"])
        self._confirm(options, f"Delete {snapshot.path}?")
        service.delete_snapshot(database, snapshot.name, username=_operator())
        self.stdout.write(self.style.SUCCESS(f"Deleted {snapshot.name}."))

    def _prune(self, database: str, options: dict[str, Any]) -> None:
        policy, doomed = service.prune_plan(database)
        self.stdout.write(f"Retention of {database}: {policy.describe()}.")
        for s in doomed:
            self.stdout.write(f"  would delete {s.name}" if options["dry_run"] else f"  {s.name}")
        if options["dry_run"]:
            self.stdout.write(f"{len(doomed)} snapshot(s) would be deleted (dry run).")
            return
        if doomed:
            self._confirm(options, f"Delete these {len(doomed)} snapshot(s)?")
        deleted = service.prune(database, username=_operator())
        self.stdout.write(self.style.SUCCESS(f"{len(deleted)} snapshot(s) deleted."))

    # Helpers ----------------------------------------------------------------------------

    def _confirm(self, options: dict[str, Any], question: str) -> None:
        if not options.get("interactive", True):
            return
        answer = input(f"{question} Type 'yes' to continue: ")
        if answer.strip().lower() != "yes":
            raise CommandError("Cancelled.")

    def _progress(self, what: str, options: dict[str, Any]) -> ProgressBar:
        return ProgressBar(
            self.stderr,
            what,
            enabled=ProgressBar.wanted(options),
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            leave=False,
        )
