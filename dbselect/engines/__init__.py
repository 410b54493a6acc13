"""The engine layer: which Django connection alias serves a session's database.

One `EngineCache` (dbselect/engines/cache.py), built by `install()` in AppConfig.ready(), owns
the cache, alias naming, registration and disposal; the functions below are its public face,
so callers write `engines.open(target)`. Beside it, one module per concern:

- `connections`: per-thread connection bookkeeping (dispose generations, fd bounds, Django's
  request receivers in O(this thread's connections));
- `workers`: what the worker processes of one machine share (dispose feed, engine tables) and
  each worker's report and janitor thread;
- `gate`: the maintenance gate a request holds on its database (restore and migrate close it);
- `live_files`, `query_budget`, `fingerprints`: the rules every connection and check obeys;
- `backend`: the Django database backend of runtime aliases (never creates a file);
- `admin_table`, `session_counts`, `views`, `urls`: the engines page for operators.
"""

from __future__ import annotations

import builtins

from dbselect.engines.cache import (
    ENGINE,
    REPLACED,
    DatabaseUnavailable,
    Engine,
    EngineCache,
    alias_for_path,
    connection_options,
    create_file,
)
from dbselect.files.validation import DatabaseInfo

__all__ = [
    "ENGINE",
    "REPLACED",
    "DatabaseUnavailable",
    "Engine",
    "EngineCache",
    "alias_for_path",
    "all",
    "apply_remote_disposals",
    "cache",
    "connection_options",
    "create_file",
    "dispose",
    "get",
    "install",
    "open",
    "register",
    "reset",
    "validate_and_register",
]

_cache: EngineCache | None = None


def install() -> EngineCache:
    """Build this process's engine cache (AppConfig.ready()); idempotent."""
    global _cache
    if _cache is None:
        _cache = EngineCache()
        _cache.adopt_configured_aliases()
    return _cache


def cache() -> EngineCache:
    """Return this process's engine cache."""
    return _cache if _cache is not None else install()


def open(target: str, *, fingerprint: str | None = None) -> Engine:
    """Return a usable engine for `target`; see EngineCache.open."""
    return cache().open(target, fingerprint=fingerprint)


def validate_and_register(
    target: str, info: DatabaseInfo | None = None
) -> builtins.tuple[Engine, DatabaseInfo]:
    """Validate (unless `info` already did) and register `target`; see EngineCache."""
    return cache().validate_and_register(target, info)


def register(target: str, *, alias: str | None = None, display_name: str | None = None) -> Engine:
    """Register `target` without validating it (operator commands, tests); idempotent."""
    return cache().register(target, alias=alias, display_name=display_name)


def get(target: str) -> Engine | None:
    """Return the cached engine of `target`, if any."""
    return cache().get(target)


def all() -> builtins.list[Engine]:
    """Return this process's cached engines (each file once)."""
    return cache().all()


def dispose(target: str, *, forget: bool = True, everywhere: bool = False) -> bool:
    """Close every connection to `target` in this process (`everywhere`: in every worker)."""
    return cache().dispose(target, forget=forget, everywhere=everywhere)


def apply_remote_disposals() -> int:
    """Dispose here what other worker processes asked to dispose; return how many."""
    return cache().apply_remote_disposals()


def reset() -> None:
    """Re-read the settings the engine layer depends on (tests, `setting_changed`)."""
    cache().reset()
