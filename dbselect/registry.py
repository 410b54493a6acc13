"""The engine cache: absolute database path -> Django connection alias.

Each path gets one stable alias, registered in `django.db.connections` at runtime with a
complete settings dict copied from the normalised `default` alias (a bare dict fails with
KeyError: 'TIME_ZONE' on Django >= 4.1). Registration replaces the settings dict instead of
inserting into it (copy-on-write), because other threads iterate it in
`close_old_connections()` at the end of every request.
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field

from django.db import DEFAULT_DB_ALIAS, connections

from dbselect.conf import get_config
from dbselect.paths import is_network_path
from dbselect.validation import (
    FileIdentity,
    ValidationFailed,
    inspect_database,
    parse_header,
    refusal_reason,
)

_lock = threading.RLock()
# Replaced as a whole under _lock, so readers need no lock and iteration is always safe.
_engines: dict[str, Engine] = {}
_thread_state = threading.local()


class DatabaseUnavailable(Exception):
    """The selected database cannot be used any more; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Engine:
    """One cached database: its alias, connection mode and usage figures."""

    path: str
    alias: str
    network: bool
    journal_mode: str
    identity: FileIdentity | None
    display_name: str | None = None
    first_used: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    requests: int = 0
    # Bumped by dispose(); a thread whose connection predates it closes the connection.
    generation: int = 0

    def touch(self) -> None:
        self.last_used = time.time()
        self.requests += 1


def alias_for_path(path: str) -> str:
    """Return the stable alias derived from an absolute path."""
    return "nw_" + hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def connection_options(network: bool) -> dict[str, object]:
    """Return the SQLite OPTIONS every NukeWorks connection gets."""
    config = get_config()
    journal = "DELETE" if network else "WAL"
    synchronous = str(config["SYNCHRONOUS"]).upper()
    return {
        "timeout": float(config["BUSY_TIMEOUT"]),
        "transaction_mode": "IMMEDIATE",
        "init_command": f"PRAGMA journal_mode={journal};PRAGMA synchronous={synchronous}",
    }


def _settings_for(path: str, network: bool) -> dict[str, object]:
    template = connections.settings[DEFAULT_DB_ALIAS]
    cfg = copy.deepcopy(template)
    cfg["NAME"] = path
    cfg["OPTIONS"] = connection_options(network)
    cfg["TEST"] = {**template.get("TEST", {}), "NAME": None, "MIRROR": None}
    return cfg


def _publish(alias: str, cfg: dict[str, object]) -> None:
    new = dict(connections.settings)
    new[alias] = cfg
    # cached_property storage: a plain attribute assignment swaps the dict atomically.
    connections.settings = new


def register(path: str, *, alias: str | None = None, display_name: str | None = None) -> Engine:
    """Register `path` (absolute, normalised) and return its engine; idempotent."""
    global _engines
    engine = _engines.get(path)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(path)
        if engine is not None:
            return engine
        network = is_network_path(path)
        taken = connections.settings.get(alias) if alias else None
        if alias is None or (taken is not None and taken.get("NAME") != path):
            alias = alias_for_path(path)
        if alias not in connections.settings:
            _publish(alias, _settings_for(path, network))
        engine = Engine(
            path=path,
            alias=alias,
            network=network,
            journal_mode="delete" if network else "wal",
            identity=None,
            display_name=display_name,
        )
        _engines = {**_engines, path: engine}
        return engine


def adopt_configured_aliases() -> None:
    """Give aliases configured in settings (e.g. `default`) the NukeWorks connection options."""
    global _engines
    with _lock:
        for alias, cfg in list(connections.settings.items()):
            if cfg.get("ENGINE") != "django.db.backends.sqlite3":
                continue
            name = str(cfg.get("NAME") or "")
            if not name or name == ":memory:" or name.startswith("file:"):
                continue
            path = os.path.normpath(os.path.abspath(name))
            network = is_network_path(path)
            cfg["OPTIONS"] = {**connection_options(network), **cfg.get("OPTIONS", {})}
            if path not in _engines:
                engine = Engine(path, alias, network, "delete" if network else "wal", None)
                _engines = {**_engines, path: engine}


def engines() -> list[Engine]:
    """Return the cached engines of this process."""
    return list(_engines.values())


def get_engine(path: str) -> Engine | None:
    """Return the engine of `path` if it is cached."""
    return _engines.get(path)


def validate_and_register(path: str) -> tuple[Engine, object]:
    """Fully validate `path`, then register it; raise DatabaseUnavailable if it is unusable."""
    try:
        info = inspect_database(path)
    except ValidationFailed as exc:
        raise DatabaseUnavailable(exc.reason) from None
    reason = refusal_reason(info)
    if reason:
        raise DatabaseUnavailable(reason)
    engine = register(path, display_name=info.display_name)
    if engine.identity is not None and not engine.identity.same_file(info.identity):
        # A different file now stands at this path: connections to the old one must go.
        dispose(path, forget=False)
    engine.identity = info.identity
    engine.display_name = info.display_name
    return engine, info


def open_engine(path: str) -> Engine:
    """Return a usable engine for a session's selected path, checking the file cheaply.

    A cached engine costs one stat() per request; its header is re-read only when the file's
    size or mtime changed. A new engine (first use in this process) is fully validated.
    """
    engine = _engines.get(path)
    if engine is None or engine.identity is None:
        engine, _ = validate_and_register(path)
    else:
        _check_unchanged(engine)
    _close_if_disposed(engine)
    engine.touch()
    return engine


def _check_unchanged(engine: Engine) -> None:
    try:
        st = os.stat(engine.path)
    except FileNotFoundError:
        raise DatabaseUnavailable("The database file no longer exists.") from None
    except OSError as exc:
        raise DatabaseUnavailable(f"The database file cannot be reached: {exc.strerror}.") from None
    current = FileIdentity.of(st)
    known = engine.identity
    assert known is not None
    if not known.same_file(current):
        raise DatabaseUnavailable("The database file was replaced by a different file.")
    if (current.size, current.mtime_ns) == (known.size, known.mtime_ns):
        return
    try:
        with open(engine.path, "rb") as fh:
            data = fh.read(100)
        parse_header(data, current.size)
    except ValidationFailed as exc:
        raise DatabaseUnavailable(exc.reason) from None
    except OSError as exc:
        raise DatabaseUnavailable(f"The database file cannot be read: {exc.strerror}.") from None
    engine.identity = current


def _close_if_disposed(engine: Engine) -> None:
    seen: dict[str, int] = getattr(_thread_state, "generations", None) or {}
    if seen.get(engine.alias, 0) != engine.generation:
        connections[engine.alias].close()
    seen[engine.alias] = engine.generation
    _thread_state.generations = seen


def dispose(path: str, *, forget: bool = True) -> bool:
    """Close this thread's connection to `path` and make every other thread close its own.

    With `forget`, the engine leaves the cache; a session still on it re-opens it (with full
    validation) on its next request. Return False when the path was not cached.
    """
    global _engines
    with _lock:
        engine = _engines.get(path)
        if engine is None:
            return False
        engine.generation += 1
        connections[engine.alias].close()
        if forget:
            engine.identity = None
    return True
