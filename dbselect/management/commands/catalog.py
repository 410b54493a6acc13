"""`manage.py catalog add|list|remove`: the PostgreSQL databases sessions may select."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dbselect import catalog
from dbselect.catalog import registry


class Command(BaseCommand):
    help = (
        "Register PostgreSQL databases as catalog entries (selectable by label, and a "
        "connection alias for --database <label>), list them, or remove them. URLs are "
        "shown without their password."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser(
            "add",
            help="Register a PostgreSQL database under a label.",
            description="Register postgresql://user:password@host:port/dbname under LABEL. "
            "Give - as the URL to read it from standard input (keeps the password out of "
            "the process list and the shell history).",
        )
        add.add_argument("label", help="1 to 40 letters, digits, _ or -.")
        add.add_argument("url", help="postgresql://user:password@host:port/dbname, or -.")
        add.add_argument("--display-name", default="", help="Name shown if the database has none.")
        add.add_argument(
            "--no-check",
            action="store_true",
            help="Register without connecting first (the server is down for now).",
        )
        add.add_argument(
            "--replace", action="store_true", help="Replace an entry with the same label."
        )
        listing = sub.add_parser("list", help="List the entries (passwords hidden).")
        listing.add_argument(
            "--check", action="store_true", help="Connect to each and show its schema state."
        )
        remove = sub.add_parser(
            "remove", help="Remove an entry (the database stays on its server)."
        )
        remove.add_argument("label")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"_{action}")(**options)

    def _add(self, *, label: str, url: str, display_name: str, **options: Any) -> None:
        if url == "-":
            url = sys.stdin.readline().strip()
        try:
            entry, info = registry.add(
                label,
                url,
                display_name,
                verify=not options["no_check"],
                replace=options["replace"],
            )
        except catalog.BadURL as exc:
            raise CommandError(str(exc)) from None
        state = f" ({info.state.value.replace('_', ' ')})" if info is not None else ""
        self.stdout.write(
            self.style.SUCCESS(f"Registered {entry.label}: {entry.redacted_url}{state}")
        )
        if info is not None and info.state.value != "up_to_date":
            self.stdout.write(f"Next: manage.py migrate --database {entry.label}")

    def _list(self, *, check: bool, **options: Any) -> None:
        rows = (
            [("LABEL", "DISPLAY NAME", "URL", "STATE")]
            if check
            else [("LABEL", "DISPLAY NAME", "URL")]
        )
        for entry in catalog.entries():
            row: tuple[str, ...] = (entry.label, entry.display_name or "-", entry.redacted_url)
            if check:
                info, reason = registry.check(entry)
                row += (reason or (info.state.value.replace("_", " ") if info else "?"),)
            rows.append(row)
        if len(rows) == 1:
            self.stdout.write("No PostgreSQL databases are registered (manage.py catalog add).")
            return
        widths = [max(len(r[i]) for r in rows[:]) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]
            self.stdout.write("  ".join(cells).rstrip())

    def _remove(self, *, label: str, **options: Any) -> None:
        if not registry.remove(label):
            known = ", ".join(e.label for e in catalog.entries()) or "none"
            raise CommandError(f"No database is registered as {label!r} (registered: {known}).")
        self.stdout.write(
            self.style.SUCCESS(f"Removed {label}; the database itself is left on its server.")
        )
