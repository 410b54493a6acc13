"""Move a database that never became ready aside to databases/.discarded/ (never deleted)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from provisioning import progress, service
from provisioning.management.commands.createdb import operator


class Command(BaseCommand):
    help = (
        "Discard a database whose building failed, was interrupted or left a file that is not "
        "ready: its folder is moved to databases/.discarded/<label>-<UTC time>/, never deleted. "
        "A ready database, or one being built right now, is refused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("label", help="Folder name under the databases directory.")
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation.",
        )

    def handle(self, *args: Any, label: str, interactive: bool, **options: Any) -> None:
        try:
            service.check_label(label)
        except service.ProvisioningError as exc:
            raise CommandError(exc.message) from None
        current = progress.status(label)
        if interactive:
            answer = input(
                f"Discard '{label}' ({current.state}: {current.message})? Type 'yes' to continue: "
            )
            if answer.strip().lower() != "yes":
                raise CommandError("Cancelled.")
        try:
            target = service.discard(label, requested_by=operator(), via="manage.py")
        except service.ProvisioningError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(f"Discarded '{label}': moved to {target}"))
