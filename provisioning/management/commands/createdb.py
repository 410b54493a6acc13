"""Create databases/<label>/nukeworks.sqlite from a seed package, as a job of the task queue."""

from __future__ import annotations

import getpass
import sys
import time
from typing import Any

from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bundles.management.commands._common import add_postgres_arguments
from dbselect.catalog.dsn import BadURL, PostgresURL, parse
from dbselect.management.progress import ProgressBar
from provisioning import progress, service, worker

# Seconds between two looks at the marker while waiting for a worker.
POLL_INTERVAL = 0.1
# Seconds a queued job may wait while no worker runs before this command builds it itself.
NO_WORKER_GRACE = 2.0


def operator() -> str:
    """Return who runs the command (for the audit entries)."""
    try:
        return f"{getpass.getuser()} (manage.py)"
    except (KeyError, OSError):
        return "manage.py"


class Command(BaseCommand):
    help = (
        "Create databases/<label>/nukeworks.sqlite as a background job: migrated, filled from "
        "a seed package (--seed name@version) or empty (--empty), with a first administrator "
        "(--admin). Waits for the job with a progress bar, building it here when no queue "
        "worker runs; --no-wait only queues it. --retry rebuilds a database that never became "
        "ready. An existing label is refused. --postgres-like LABEL (the server and credentials "
        "of that catalog entry) or --postgres-url URL creates the database on a PostgreSQL "
        "server instead (CREATE DATABASE) and registers it in the catalog once it is ready; a "
        "URL's build runs in this command only (its password is never queued), and --retry "
        "needs the same --postgres-url again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("label", help="Folder name under the databases directory.")
        content = parser.add_mutually_exclusive_group()
        content.add_argument("--seed", help="Seed package as name@version (e.g. starter@1).")
        content.add_argument(
            "--empty", action="store_true", help="An empty database (the default)."
        )
        parser.add_argument("--display-name", default="", help="Default: the label.")
        parser.add_argument("--admin", metavar="USER", help="Username of the first admin.")
        parser.add_argument(
            "--admin-password",
            help="The first admin's password (asked for when --admin is given without it).",
        )
        parser.add_argument(
            "--no-wait", action="store_true", help="Only queue the job; a worker builds it."
        )
        parser.add_argument(
            "--retry",
            action="store_true",
            help="Queue the build of a database that failed, was interrupted or is not ready "
            "again, as it was first requested.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
        add_postgres_arguments(parser)

    def _url(self, options: dict[str, Any]) -> PostgresURL | None:
        if not options["postgres_url"]:
            return None
        if options["postgres_like"] or options["postgres_dbname"]:
            raise CommandError("--postgres-url names server and database: nothing else goes.")
        if options["no_wait"]:
            raise CommandError("A database on a --postgres-url server is built here: no --no-wait.")
        try:
            return parse(options["postgres_url"])
        except BadURL as exc:
            raise CommandError(str(exc)) from None

    def handle(self, *args: Any, label: str, **options: Any) -> None:
        wait = not options["no_wait"]
        url = self._url(options)
        build_here = url is not None or (wait and not worker.running())
        try:
            if options["retry"]:
                if (
                    options["seed"]
                    or options["empty"]
                    or options["admin"]
                    or options["postgres_like"]
                    or options["postgres_dbname"]
                ):
                    raise CommandError("--retry rebuilds as first requested: give only the label.")
                job = service.retry(
                    label,
                    requested_by=operator(),
                    via="manage.py",
                    enqueue=not build_here,
                    postgres_url=url,
                )
            else:
                job = service.request_build(
                    label,
                    seed=options["seed"],
                    display_name=options["display_name"],
                    admin_username=options["admin"],
                    admin_password_hash=self._password_hash(options),
                    requested_by=operator(),
                    via="manage.py",
                    enqueue=not build_here,
                    postgres_like=options["postgres_like"],
                    postgres_dbname=options["postgres_dbname"],
                    postgres_url=url,
                )
        except service.ProvisioningError as exc:
            raise CommandError(exc.message) from None
        if not wait:
            self.stdout.write(
                f"Queued job {job.job} for '{label}'; a worker (manage.py run_huey) builds it. "
                f"Follow it with manage.py dbstatus or at /select-db/preparing/{label}."
            )
            return
        with ProgressBar(
            self.stderr, "building", enabled=ProgressBar.wanted(options), unit="step"
        ) as bar:
            if build_here:
                if url is None:
                    self.stderr.write("No queue worker is running: building here.")
                final = service.run(label, job.job, on_progress=bar.update, postgres_url=url)
            else:
                final = self._wait(label, job.job, bar)
        if final.state != progress.READY:
            raise CommandError(f"'{label}' was not built ({final.state}): {final.message}")
        path = progress.target_for(label)
        self.stdout.write(self.style.SUCCESS(f"Created database '{final.display_name}' at {path}"))
        if not options["retry"] and not options["admin"]:
            self.stdout.write(
                f"It has no administrator: manage.py ensureadmin --database {label} adds one."
            )

    def _wait(self, label: str, job: str, bar: ProgressBar) -> progress.Status:
        """Follow the marker until the job ends; build here if the workers went away."""
        idle_since: float | None = None
        while True:
            current = progress.status(label)
            if current.total:
                bar.update(current.done, current.total)
            if not current.in_progress:
                return current
            if current.state == progress.QUEUED and not worker.running():
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > NO_WORKER_GRACE:
                    self.stderr.write("The queue worker stopped: building here.")
                    # The queued job then finds the database built (or this builder at work)
                    # and does nothing.
                    return service.run(label, job, on_progress=bar.update)
            else:
                idle_since = None
            time.sleep(POLL_INTERVAL)

    def _password_hash(self, options: dict[str, Any]) -> str | None:
        username = options["admin"]
        if not username:
            if options["admin_password"]:
                raise CommandError("--admin-password needs --admin.")
            return None
        password = options["admin_password"]
        if password is None:
            if not sys.stdin.isatty():
                raise CommandError("Give --admin-password (no terminal to ask for it).")
            password = getpass.getpass(f"Password for {username}: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The two passwords differ.")
        if not password:
            raise CommandError("The first admin needs a password.")
        try:
            validate_password(password)
        except ValidationError as exc:
            raise CommandError("Password refused: " + " ".join(exc.messages)) from None
        return make_password(password)
