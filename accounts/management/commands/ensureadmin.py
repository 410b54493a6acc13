"""Create the first admin user of a database if it has none; print the password once."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError


class Command(BaseCommand):
    help = (
        "Create an admin (superuser) in the database if it has no admin yet and print the "
        "generated password once. Running it again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")
        parser.add_argument("--username", default="admin", help="Username (default: admin).")

    def handle(self, *args: Any, database: str, username: str, **options: Any) -> None:
        User = get_user_model()
        manager = User._default_manager.db_manager(database)
        try:
            admins = manager.filter(is_superuser=True, is_active=True)
            existing = admins.order_by("id").first()
            if existing is not None:
                self.stdout.write(
                    f"Admin user '{existing.username}' already exists; password unchanged."
                )
                return
            if manager.filter(username=username).exists():
                raise CommandError(f"User '{username}' exists but is not an active superuser.")
            password = secrets.token_urlsafe(12)
            manager.create_superuser(username=username, email="", password=password)
        except DatabaseError as exc:
            raise CommandError(f"Database '{database}' is not usable: {exc}") from exc
        self.stdout.write(self.style.SUCCESS("Created admin user (shown only this once):"))
        self.stdout.write(f"  username: {username}")
        self.stdout.write(f"  password: {password}")
