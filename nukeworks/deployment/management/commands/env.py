"""manage.py env: the environment in force and where every non-default setting comes from.

    manage.py env                     the environment, the priority order, the files read, and
                                      every setting that differs from its default with its source
    manage.py env --json              the same as JSON
    manage.py env --switch production record the environment in instance/environment, used by
                                      later commands and `make run` when NUKEWORKS_ENV is not set

Secrets are never printed: SECRET_KEY, tokens, passwords and the credentials in URLs are masked.
Runs without the system checks, so it also explains a production configuration they refuse.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from nukeworks.deployment import environments


class Command(BaseCommand):
    help = (
        "Show the active environment (NUKEWORKS_ENV) and where each non-default setting comes "
        "from (secrets masked); --switch NAME records the environment in instance/."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--switch",
            metavar="NAME",
            help=f"record NAME ({', '.join(environments.ENVIRONMENTS)}) as this machine's "
            "environment in instance/environment",
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--brief", action="store_true", help="one line: the environment and what chose it"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        env = environments.current()
        if options["switch"]:
            self._switch(env, options["switch"])
            return
        environments.server_settings(env)  # gunicorn's variables are shown too
        report = environments.report(env)
        report["secret_key"] = (
            "generated (instance/secret_key)"
            if getattr(settings, "NUKEWORKS_SECRET_KEY_GENERATED", False)
            else "set"
        )
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        elif options["brief"]:
            self.stdout.write(
                f"NukeWorks environment: {report['environment']} ({report['chosen_by']})"
            )
        else:
            self._print(report)

    def _switch(self, env: environments.LayeredEnv, name: str) -> None:
        layers = env.layers
        try:
            path = environments.write_record(layers.instance_dir, name)
        except ImproperlyConfigured as exc:
            raise CommandError(
                f"Unknown environment {name!r}: use one of {', '.join(environments.ENVIRONMENTS)}."
            ) from exc
        self.stdout.write(f"Environment {name} recorded in {path}.")
        if layers.chosen_by in (environments.PROCESS, environments.DOTENV):
            self.stdout.write(
                self.style.WARNING(
                    f"NUKEWORKS_ENV={layers.name} is set in the {layers.chosen_by}, which takes "
                    f"precedence: remove it there for {name} to be used."
                )
            )
        if name == "production":
            self.stdout.write(
                "Production refuses to start with unsafe settings: run "
                "`manage.py check --deploy` to see what is still missing."
            )

    def _print(self, report: dict[str, Any]) -> None:
        write = self.stdout.write
        write(f"Environment: {report['environment']} (chosen by: {report['chosen_by']})")
        write("Priority: " + " > ".join(report["priority"]))
        for path, exists in report["files"].items():
            write(f"  {path}: {'read' if exists else 'absent'}")
        write(f"SECRET_KEY: {report['secret_key']}")
        rows = report["settings"]
        if not rows:
            write("Every setting has its default value.")
        else:
            write("Settings that differ from their defaults:")
            width = max(len(row["name"]) for row in rows)
            for row in rows:
                note = "  (same as the default)" if row["same_as_default"] else ""
                write(f"  {row['name']:<{width}} = {row['value']}    [{row['source']}]{note}")
        for source, names in report["unread"].items():
            write(
                self.style.WARNING(
                    f"Not read by NukeWorks (a typo?) in {source}: {', '.join(names)}"
                )
            )
