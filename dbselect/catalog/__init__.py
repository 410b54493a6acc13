"""The catalog of registered databases: PostgreSQL databases an operator named by label.

The databases a session can pick from the selector are the catalog: every scanned
`databases/<label>/nukeworks.sqlite` (dbselect.scanner) and every PostgreSQL database an
operator registered here (`manage.py catalog add <label> <url>`, or the catalog page). A
visitor never types a PostgreSQL URL: a session picks an entry by label, and its *target*
(what the session stores) is `postgresql:<label>`, never the URL, so no password reaches a
session, a page, a log line or an audit entry.

Every entry is also a Django connection alias named by its label, so `manage.py migrate
--database <label>` works on it as on a scanned file.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

from dbselect.catalog import store
from dbselect.catalog.dsn import BadURL, PostgresURL, check_label, parse, redact
from dbselect.conf import get_config, setting

__all__ = [
    "KIND",
    "TARGET_PREFIX",
    "BadURL",
    "CatalogEntry",
    "PostgresURL",
    "add",
    "django_settings",
    "entries",
    "entry_for_target",
    "get",
    "is_target",
    "label_of",
    "redact",
    "remove",
    "target_for",
]

KIND = "postgresql"
TARGET_PREFIX = "postgresql:"
POSTGRES_ENGINE = "django.db.backends.postgresql"


@dataclass(frozen=True)
class CatalogEntry:
    """One registered PostgreSQL database."""

    label: str
    url: PostgresURL
    display_name: str = ""

    @property
    def target(self) -> str:
        """What a session stores for this database."""
        return target_for(self.label)

    @property
    def redacted_url(self) -> str:
        """The URL as people may see it (no password)."""
        return self.url.redacted()


def is_target(target: object) -> bool:
    """Return True for a session target naming a catalog entry (`postgresql:<label>`)."""
    return (
        isinstance(target, str)
        and target.startswith(TARGET_PREFIX)
        and not target.startswith(TARGET_PREFIX + "//")
    )


def looks_like_url(raw: object) -> bool:
    """Return True for text that is a PostgreSQL URL (never connected to from a form)."""
    text = raw.strip().lower() if isinstance(raw, str) else ""
    return text.startswith(("postgresql://", "postgres://"))


def target_for(label: str) -> str:
    """Return the session target of the entry labelled `label`."""
    return TARGET_PREFIX + label


def label_of(target: str) -> str | None:
    """Return the label of a catalog target, None for anything else."""
    return target[len(TARGET_PREFIX) :] if is_target(target) else None


def _entry(label: str, stored: dict[str, Any]) -> CatalogEntry | None:
    try:
        return CatalogEntry(label, parse(stored.get("url")), str(stored.get("display_name") or ""))
    except BadURL:
        return None


def entries() -> list[CatalogEntry]:
    """Return every registered entry, by label (unparseable stored entries are skipped)."""
    found = [_entry(label, stored) for label, stored in store.get_store().read().items()]
    return sorted((e for e in found if e is not None), key=lambda e: e.label)


def get(label: str) -> CatalogEntry | None:
    """Return the entry labelled `label`, if registered."""
    stored = store.get_store().read().get(label)
    return _entry(label, stored) if stored is not None else None


def entry_for_target(target: str) -> CatalogEntry | None:
    """Return the entry a session target names, if it is still registered."""
    label = label_of(target)
    return get(label) if label is not None else None


def add(label: str, url: str, display_name: str = "", *, replace: bool = False) -> CatalogEntry:
    """Register a PostgreSQL database under `label`; raise BadURL with the reason if refused.

    The label must be free: not another entry (unless `replace`), nor a scanned
    databases/<label>/ folder, nor a connection alias the project configured.
    """
    check_label(label)
    parsed = parse(url)
    folder = os.path.join(get_config()["DATABASES_DIR"], label, setting("DATABASE_FILENAME"))
    if os.path.exists(folder):
        raise BadURL(f"The label {label!r} already names a database file ({folder}).")
    from django.conf import settings

    if label in settings.DATABASES:
        raise BadURL(f"The label {label!r} is a connection alias of the project's settings.")
    name = (display_name or "").strip()[:200]
    if not store.get_store().put(label, store.new_entry(parsed.url(), name), replace=replace):
        raise BadURL(f"A database is already registered as {label!r} (remove it first).")
    return CatalogEntry(label, parsed, name)


def remove(label: str) -> bool:
    """Unregister `label` (the database itself is left on its server); False if unknown."""
    return store.get_store().delete(label)


def django_settings(entry: CatalogEntry, template: dict[str, Any]) -> dict[str, Any]:
    """Return the Django DATABASES settings of `entry`, built on the `template` alias."""
    cfg = copy.deepcopy(template)
    url = entry.url
    cfg.update(
        {
            "ENGINE": POSTGRES_ENGINE,
            "NAME": url.dbname,
            "USER": url.user,
            "PASSWORD": url.password,
            "HOST": url.host,
            "PORT": str(url.port),
            "CONN_HEALTH_CHECKS": bool(cfg.get("CONN_MAX_AGE")),
        }
    )
    options: dict[str, Any] = {
        k: v for k, v in url.options if k in ("sslmode", "sslrootcert", "application_name")
    }
    options.setdefault("connect_timeout", int(setting("POSTGRES_CONNECT_TIMEOUT")))
    options.setdefault("application_name", "nukeworks")
    cfg["OPTIONS"] = options
    cfg["TEST"] = {**template.get("TEST", {}), "NAME": None, "MIRROR": None}
    return cfg
