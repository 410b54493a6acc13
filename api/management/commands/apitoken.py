"""manage.py apitoken --database <label> <username>: a token for scripts, printed once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from knox.models import AuthToken

from audit import log as audit_log
from dbselect import catalog, engines, scanner, selection, state
from dbselect.files.validation import ValidationFailed, refusal_reason


class Command(BaseCommand):
    help = (
        "Create an API token for a user of one catalog database and print it once (only its "
        "digest is stored, in that database). Use it as 'Authorization: Token <token>' on "
        "/api/v1/databases/<label>/…; it expires after REST_KNOX['TOKEN_TTL']."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            required=True,
            help="Catalog label (a folder under databases/, or a registered PostgreSQL database).",
        )
        parser.add_argument("username", help="A user of that database.")

    def handle(self, *args: Any, **options: Any) -> None:
        label = options["database"]
        paths = dict(scanner.database_files())
        registered = catalog.get(label)
        if registered is not None:
            paths[label] = registered.target
        if label not in paths:
            known = ", ".join(sorted({*paths, *(e.label for e in catalog.entries())})) or "none"
            raise CommandError(f"No database is labelled {label!r} (known: {known}).")
        path = paths[label]
        try:
            reason = refusal_reason(selection.inspect_target(path))
        except ValidationFailed as exc:
            reason = exc.reason
        if reason:
            raise CommandError(f"The database {label!r} cannot be used: {reason}")
        alias = engines.register(path).alias
        with state.override(alias):
            user = get_user_model()._default_manager.filter(username=options["username"]).first()
            if user is None or not user.is_active:
                raise CommandError(f"No active user {options['username']!r} in {label!r}.")
            instance, token = AuthToken.objects.create(user=user)
            audit_log.record(
                "api.token",
                target=user.get_username(),
                user=user,
                using=alias,
                detail="token created by manage.py apitoken",
            )
        expiry = instance.expiry.isoformat() if instance.expiry else "never"
        self.stdout.write(token)
        self.stderr.write(f"Token for {user.get_username()} in {label!r}, expires {expiry}.")
