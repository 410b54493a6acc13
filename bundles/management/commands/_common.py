"""What exportdb and importdb share: finding a labelled database, the operator's name."""

from __future__ import annotations

import getpass
import os

from django.core.management.base import CommandError

from dbselect import scanner
from dbselect.files.validation import ValidationFailed, inspect_database


def operator() -> str:
    """Return who runs the command, for audit entries."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "operator"
    return f"{who} (manage.py)"


def labelled_database(label: str) -> str:
    """Return the path of databases/<label>/nukeworks.sqlite, validated; raise CommandError."""
    files = dict(scanner.database_files())
    if label not in files:
        known = ", ".join(sorted(files)) or "none"
        raise CommandError(f"No database labelled {label!r} (known labels: {known}).")
    path = os.path.normpath(os.path.abspath(files[label]))
    try:
        inspect_database(path)
    except ValidationFailed as exc:
        raise CommandError(f"{path}: {exc.reason}") from None
    return path
