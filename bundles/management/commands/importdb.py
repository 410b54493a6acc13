"""manage.py importdb file.zip (--new <label> | --into <label>): import a bundle."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from audit import log as audit_log
from bundles import package
from bundles.management.commands._common import (
    add_postgres_arguments,
    labelled_database,
    operator,
    postgres_destination,
)
from bundles.newdb import build_new_database, build_new_postgres_database, database_path
from bundles.progress import rows_bar
from dbselect import engines


class Command(BaseCommand):
    help = (
        "Import a bundle (a .zip or a folder written by exportdb, or a seed package) into a "
        "new database (--new <label>: databases/<label>/nukeworks.sqlite, built under a "
        "temporary name and moved into place when complete) or into an existing database "
        "without companies or projects (--into <label>). The bundle is validated first and "
        "applied in one transaction: on any error nothing is changed. Its attachment files go "
        "into the database's payloads/ folder, each checked against its SHA-256. With "
        "--postgres-like or --postgres-url, --new creates the database on a PostgreSQL server "
        "and registers it in the catalog once it is complete."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bundle", help="The .zip or folder to import.")
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--new", metavar="LABEL", help="Create databases/<LABEL>/.")
        where.add_argument("--into", metavar="LABEL", help="An existing database without data.")
        parser.add_argument("--display-name", help="Display name of a new database.")
        parser.add_argument(
            "--no-users",
            action="store_true",
            help="Leave out the bundle's users, if it has any.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
        add_postgres_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        enabled = not options["no_progress"] and options.get("verbosity", 1) >= 1
        try:
            bundle = package.load(options["bundle"])
            include_users = False if options["no_users"] else None
            pg_url = postgres_destination(
                options["new"] or "",
                options["postgres_like"],
                options["postgres_url"],
                options["postgres_dbname"],
            )
            if pg_url is not None and not options["new"]:
                raise CommandError("--postgres-like and --postgres-url go with --new.")
            if options["new"]:
                label = options["new"]
                if database_path(label).exists():
                    raise CommandError(f"A database labelled {label!r} already exists.")
                if include_users is False and bundle.include_users:
                    raise CommandError("--no-users applies to --into only.")
                name = options["display_name"] or label.title()
                with rows_bar("Import", self.stderr, enabled) as progress:
                    if pg_url is not None:
                        path = build_new_postgres_database(
                            label,
                            pg_url,
                            package=bundle,
                            display_name=name,
                            admin=None,
                            progress=progress,
                        )
                    else:
                        path = str(
                            build_new_database(
                                label,
                                package=bundle,
                                display_name=name,
                                admin=None,
                                progress=progress,
                            )
                        )
                alias = engines.register(path).alias
                counts = bundle.counts
                verb = "Created"
            else:
                label = options["into"]
                path = labelled_database(label)
                alias = engines.register(path).alias
                try:
                    with rows_bar("Import", self.stderr, enabled) as progress:
                        counts = package.apply(
                            bundle, alias, progress=progress, include_users=include_users
                        )
                finally:
                    connections[alias].close()
                verb = "Imported into"
        except package.BundleError as exc:
            raise CommandError(str(exc)) from None
        audit_log.record(
            "bundle.import",
            target=str(bundle.path),
            detail=f"{bundle.ref} {counts}",
            username=operator(),
            using=alias,
        )
        connections[alias].close()
        rows = ", ".join(f"{n} {name.split('.')[1]} rows" for name, n in counts.items())
        self.stdout.write(self.style.SUCCESS(f"{verb} {label} from {bundle.ref} ({rows}): {path}"))
        if options["new"] and not bundle.include_users:
            self.stdout.write(
                f"The new database has no users yet: create its first admin with "
                f"`manage.py ensureadmin --database {label}`."
            )
