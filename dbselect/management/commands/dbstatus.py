"""A table of every scanned database (and any --path): name, size, schema state."""

from __future__ import annotations

import os
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dbselect.files.paths import PathRejected, normalize_user_path
from dbselect.files.validation import ValidationFailed, inspect_database, not_ready_reason
from dbselect.scanner import database_files, preparing_databases


def human_size(size: int) -> str:
    """Return a size in bytes as a short human-readable string."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _preparing(marker: dict) -> str:
    """Return the state column of a database being prepared (dbselect.layout's marker)."""
    if marker["state"] in ("failed", "interrupted"):
        return f"preparation {marker['state']}: {marker['message']}"
    steps = f" {marker['done']}/{marker['total']}" if marker["total"] else ""
    age = ""
    if marker["updated"] is not None:
        age = f", updated {max(0, int(time.time() - marker['updated']))} s ago"
    return f"being prepared: {marker['state']}{steps}{age}"


class Command(BaseCommand):
    help = (
        "Show every databases/<label>/nukeworks.sqlite (and each --path) with its display name, "
        "size, schema state and number of pending migrations, and the databases being "
        "prepared with their progress. Read-only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--path", action="append", default=[], help="Another database file (repeatable)."
        )

    def handle(self, *args: Any, path: list[str], **options: Any) -> None:
        targets = list(database_files())
        for raw in path:
            try:
                normalized = normalize_user_path(raw)
            except PathRejected as exc:
                targets.append(("-", f"{raw} ({exc})"))
                continue
            targets.append(("-", normalized))
        header = ("LABEL", "DISPLAY NAME", "SIZE", "STATE", "PENDING", "PATH")
        rows = [header]
        for label, db_path in targets:
            try:
                info = inspect_database(db_path)
            except ValidationFailed as exc:
                rows.append((label, "-", "-", "unusable: " + exc.reason, "-", db_path))
                continue
            state = info.state.label
            if not_ready_reason(info):
                state = f"not ready (seed status {info.seed_status!r}): never served"
            rows.append(
                (
                    label,
                    info.display_name or "-",
                    human_size(os.path.getsize(db_path)),
                    state,
                    str(len(info.pending)),
                    db_path,
                )
            )
        rows.extend(
            (label, marker["display_name"] or "-", "-", _preparing(marker), "-", db_path)
            for label, db_path, marker in preparing_databases()
        )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        for index, row in enumerate(rows):
            line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            line = f"{line}  {row[-1]}"
            self.stdout.write(self.style.MIGRATE_HEADING(line) if index == 0 else line)
        if len(rows) == 1:
            self.stdout.write("No databases found.")
