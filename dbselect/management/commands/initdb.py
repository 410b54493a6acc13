"""Create (or bring up to date) databases/<label>/nukeworks.sqlite with its snapshots folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dbselect import engines, state
from dbselect.conf import get_config
from dbselect.layout import snapshot_dir_for
from dbselect.models import SystemSetting


class Command(BaseCommand):
    help = (
        "Create databases/<label>/nukeworks.sqlite (migrated, with a display name) and its "
        "snapshots/ folder. An existing database keeps its data; pending migrations are applied."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("label", help="Folder name under the databases directory.")
        parser.add_argument(
            "--display-name",
            help="Friendly name stored in the database when it has none yet (default: the label).",
        )

    def handle(self, *args: Any, label: str, display_name: str | None, **options: Any) -> None:
        if not label or "/" in label or label.startswith("."):
            raise CommandError("The label must be a plain folder name.")
        config = get_config()
        folder = Path(config["DATABASES_DIR"]) / label
        path = str((folder / config["DATABASE_FILENAME"]).resolve())
        existed = Path(path).exists()
        folder.mkdir(parents=True, exist_ok=True)
        snapshot_dir_for(path).mkdir(exist_ok=True)
        engines.create_file(path)
        engine = engines.register(path, alias=label)
        with state.override(engine.alias):
            call_command("migrate", database=engine.alias, interactive=False, verbosity=0)
            current = SystemSetting.get_value(SystemSetting.DISPLAY_NAME)
            if not current:
                SystemSetting.set_value(SystemSetting.DISPLAY_NAME, display_name or label.title())
            name = SystemSetting.get_value(SystemSetting.DISPLAY_NAME)
        verb = "Updated" if existed else "Created"
        self.stdout.write(self.style.SUCCESS(f"{verb} database '{name}' at {path}"))
