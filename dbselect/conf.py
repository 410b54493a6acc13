"""Settings of dbselect: one `DBSELECT` dict in the project settings over these defaults."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # Folder scanned for databases/<label>/nukeworks.sqlite.
    "DATABASES_DIR": None,
    # Machine-local JSON with recent paths, last browsed folder and the global default.
    "SELECTOR_CACHE_FILE": None,
    # Folders a session may select or browse; empty means unrestricted (the spec's default).
    "ALLOWED_ROOTS": [],
    # Seconds a connection waits for a lock held by another connection.
    "BUSY_TIMEOUT": 5.0,
    # PRAGMA synchronous on every connection: FULL loses nothing committed on power failure.
    "SYNCHRONOUS": "FULL",
    # Seconds one query may run (executing and fetching) before SQLite interrupts it: a
    # database file's own triggers must never hold a worker. 0 disables the budget.
    "QUERY_TIME_LIMIT": 10.0,
    # Seconds a request waits while an administrator restores or migrates its database.
    "MAINTENANCE_WAIT": 10.0,
    # Databases whose admins are server-wide operators (empty: databases/default/<file>).
    "OPERATOR_DATABASES": [],
    # Seconds a stat() of a user-typed path may take (network shares may hang).
    "STAT_TIMEOUT": 3.0,
    # Register databases/<label>/nukeworks.sqlite as alias <label> when Django starts.
    "REGISTER_SCANNED_AT_STARTUP": True,
    # How many recent paths the selector remembers.
    "RECENT_PATHS_LIMIT": 10,
    # Longest path accepted from a user.
    "MAX_PATH_LENGTH": 4096,
    # The file name the scanner looks for in each label folder.
    "DATABASE_FILENAME": "nukeworks.sqlite",
}


@cache
def get_config() -> dict[str, Any]:
    """Return the effective dbselect settings."""
    config = dict(DEFAULTS)
    config.update(getattr(settings, "DBSELECT", {}))
    base_dir = Path(getattr(settings, "BASE_DIR", "."))
    if config["DATABASES_DIR"] is None:
        config["DATABASES_DIR"] = base_dir / "databases"
    if config["SELECTOR_CACHE_FILE"] is None:
        config["SELECTOR_CACHE_FILE"] = base_dir / "instance" / "db_selector.json"
    config["DATABASES_DIR"] = Path(config["DATABASES_DIR"])
    config["SELECTOR_CACHE_FILE"] = Path(config["SELECTOR_CACHE_FILE"])
    config["ALLOWED_ROOTS"] = [Path(p) for p in config["ALLOWED_ROOTS"]]
    return config


@receiver(setting_changed)
def _reset_config(*, setting: str, **kwargs: Any) -> None:
    if setting == "DBSELECT":
        get_config.cache_clear()
