"""Bring every scanned database (or each --path) up to date, safely, with a progress bar."""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from dbselect import catalog
from dbselect.files.paths import PathRejected, normalize_user_path
from dbselect.files.schema import SchemaState, migration_names
from dbselect.scanner import database_files
from migrating import service as migrating


class Command(BaseCommand):
    help = (
        "Apply pending migrations to every databases/<label>/nukeworks.sqlite and every "
        "PostgreSQL database of the catalog, or only to the files given with --path and the "
        "catalog entries given with --database. Each database is snapshotted first and "
        "restored if its migration fails. Exits non-zero when any database failed or was "
        "refused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--path",
            action="append",
            default=[],
            help="Migrate this file instead of the scanned databases (repeatable).",
        )
        parser.add_argument(
            "--database",
            action="append",
            default=[],
            help="Migrate this PostgreSQL database of the catalog, by label (repeatable).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be applied; change nothing."
        )
        parser.add_argument(
            "--lock-timeout",
            type=float,
            default=60.0,
            help="Seconds to wait for a migration of the same file by someone else.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        targets = self._targets(options["path"], options["database"])
        if not targets:
            self.stdout.write("No databases to migrate.")
            return
        author = f"migrate_all ({getpass.getuser()})"
        migrated, current, failed = [], [], []
        bar = tqdm(
            targets,
            unit="db",
            file=sys.stderr,
            desc="Migrating",
            disable=options["no_progress"] or options["verbosity"] == 0,
        )
        for path in bar:
            bar.set_postfix_str(path[-40:])
            try:
                info = migrating.plan_for(path)
            except migrating.MigrationRefused as exc:
                failed.append((path, str(exc)))
                continue
            if info.state is SchemaState.UP_TO_DATE:
                current.append(path)
                continue
            plan = migration_names(info.pending)
            if options["dry_run"]:
                migrated.append((path, f"would apply {plan}"))
                continue
            try:
                outcome = migrating.migrate_database(
                    path, author=author, lock_timeout=options["lock_timeout"]
                )
            except migrating.MigrationFailed as exc:
                if exc.untouched:
                    restored = "untouched, the migrated copy discarded; snapshot"
                else:
                    restored = "restored from snapshot" if exc.restored else "RESTORE FAILED"
                failed.append((path, f"{exc.reason} ({restored}: {exc.snapshot})"))
                continue
            except (migrating.MigrationRefused, migrating.MigrationInProgress) as exc:
                failed.append((path, str(exc)))
                continue
            if outcome.already_current:
                current.append(path)
            else:
                migrated.append((path, f"applied {plan}; snapshot {outcome.snapshot}"))
        bar.close()
        self._summary(migrated, current, failed, options["dry_run"])
        if failed:
            raise CommandError(f"{len(failed)} database(s) failed.", returncode=1)

    def _targets(self, raw_paths: list[str], labels: list[str]) -> list[str]:
        if not raw_paths and not labels:
            return [path for _, path in database_files()] + [
                entry.target for entry in catalog.entries()
            ]
        targets = []
        for label in labels:
            entry = catalog.get(label)
            if entry is None:
                raise CommandError(f"No PostgreSQL database is registered as {label!r}.")
            targets.append(entry.target)
        for raw in raw_paths:
            try:
                targets.append(normalize_user_path(raw))
            except PathRejected as exc:
                raise CommandError(f"{raw!r}: {exc}") from None
        return targets

    def _summary(self, migrated: list, current: list, failed: list, dry_run: bool) -> None:
        verb = "Would migrate" if dry_run else "Migrated"
        for path, detail in migrated:
            self.stdout.write(self.style.SUCCESS(f"{verb}: {path} — {detail}"))
        for path in current:
            self.stdout.write(f"Up to date: {path}")
        for path, reason in failed:
            self.stdout.write(self.style.ERROR(f"FAILED: {path} — {reason}"))
        self.stdout.write(
            f"{len(migrated)} {verb.lower()}, {len(current)} up to date, {len(failed)} failed."
        )
