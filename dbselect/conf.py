"""Settings of dbselect: one `DBSELECT` dict in the project settings over these defaults."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

DEFAULTS: dict[str, Any] = {
    # Folder scanned for databases/<label>/nukeworks.sqlite.
    "DATABASES_DIR": None,
    # Machine-local JSON with recent paths, last browsed folder and the global default.
    "SELECTOR_CACHE_FILE": None,
    # Folders a session may select or browse; empty means unrestricted (the spec's default).
    "ALLOWED_ROOTS": [],
    # Production refuses an empty ALLOWED_ROOTS (check dbselect.E003) unless this opts out.
    "ALLOW_UNRESTRICTED_PATHS": False,
    # Seconds a connection waits for a lock held by another connection.
    "BUSY_TIMEOUT": 5.0,
    # PRAGMA synchronous on every connection: FULL loses nothing committed on power failure.
    # One of SYNCHRONOUS_MODES (system check dbselect.E004).
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
    # -- the project around the selector (dbselect names none of its apps, models or URLs)
    # Where a session lands after selecting a database (a URL name or path, resolve_url).
    "HOME_URL": "/",
    # The view applying migrations after approval (URL name or path); None: no approve form.
    "MIGRATE_URL": None,
    # The page creating a new database (URL name or path, shown to operators); None: no link.
    "CREATE_URL": None,
    # The progress page of a database being prepared: a URL name taking the label as its one
    # argument; None: such databases are listed without a link.
    "PREPARING_URL": None,
    # Apps whose migrations mark a file as one of this project's databases.
    "SCHEMA_APPS": ["dbselect"],
    # A table that is empty in a database nobody has used yet (None: no "empty" warning),
    # and the warning shown when it is.
    "EMPTY_MARKER_TABLE": None,
    "EMPTY_MARKER_MESSAGE": "This database holds no data yet: is it the one you meant?",
    # URL prefixes whose views name and bind their own database (e.g. an API with the
    # database in its URL): the middleware neither binds nor redirects their requests.
    "SELF_BINDING_PREFIXES": [],
    # -- the engine cache
    # Folder of the store every worker process shares (engine tables, dispose requests).
    "ENGINE_STORE_DIR": None,
    # Background thread per server process (never in manage.py commands or the test client)
    # that applies disposals to idle threads and publishes the engine table.
    "ENGINE_JANITOR": True,
    # Seconds between two looks of that thread at the shared dispose counter.
    "ENGINE_JANITOR_TICK": 0.25,
    # Seconds between two unprompted publications of a worker's engine table.
    "ENGINE_HEARTBEAT": 5.0,
    # "Dispose all idle" disposes engines no worker has used for this many seconds.
    "ENGINE_IDLE_SECONDS": 300,
    # Persistent connections (CONN_MAX_AGE > 0) one thread holds open at most, at any moment:
    # the least recently used are closed before it opens one more (file-descriptor bound).
    "MAX_CONNECTIONS_PER_THREAD": 8,
    # Seconds the engines page's refresh waits for the other workers to publish a fresh table.
    "ENGINE_REFRESH_WAIT": 1.0,
    # -- the slow-query log (dbselect.engines.slow_queries)
    # Statements running this many milliseconds or more are logged on nukeworks.slow_query
    # and kept among the database's recent slow queries; 0 logs every statement, a negative
    # value turns the log off.
    "SLOW_QUERY_MS": 1000.0,
    # How many recent slow queries each worker process keeps per database.
    "SLOW_QUERY_KEEP": 20,
    # The catalog of registered (PostgreSQL) databases without REDIS_URL (dbselect.catalog);
    # None: catalog.json in the instance folder, beside SELECTOR_CACHE_FILE.
    "CATALOG_FILE": None,
    # Seconds to wait for a PostgreSQL server to accept a connection.
    "POSTGRES_CONNECT_TIMEOUT": 5,
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
    if config["ENGINE_STORE_DIR"] is None:
        config["ENGINE_STORE_DIR"] = base_dir / "instance" / "engines"
    config["DATABASES_DIR"] = Path(config["DATABASES_DIR"])
    config["SELECTOR_CACHE_FILE"] = Path(config["SELECTOR_CACHE_FILE"])
    if config["CATALOG_FILE"] is None:
        config["CATALOG_FILE"] = config["SELECTOR_CACHE_FILE"].parent / "catalog.json"
    config["CATALOG_FILE"] = Path(config["CATALOG_FILE"])
    config["ALLOWED_ROOTS"] = [Path(p) for p in config["ALLOWED_ROOTS"]]
    config["SELF_BINDING_PREFIXES"] = tuple(config["SELF_BINDING_PREFIXES"])
    return config


def setting(name: str) -> Any:
    """Return one effective dbselect setting (DBSELECT[name], else its default)."""
    return get_config()[name]
