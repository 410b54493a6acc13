"""The engine cache: absolute database path -> Django connection alias.

Each path gets one stable alias, registered in `django.db.connections` at runtime with a
complete settings dict copied from the normalised `default` alias (a bare dict fails with
KeyError: 'TIME_ZONE' on Django >= 4.1). Registration replaces the settings dict instead of
inserting into it (copy-on-write), because other threads iterate it in
`close_old_connections()` at the end of every request.

Disposing reaches every thread of this process through `dbselect.engines.connections` (per-connection
dispose generations) and every worker process through `dbselect.engines.store` (a shared
dispose counter read from memory on every request, and by the engine janitor thread).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connections
from django.dispatch import receiver

from dbselect.conf import get_config
from dbselect.engines import connections as tracking
from dbselect.engines import gate, live_files
from dbselect.files.paths import is_network_path, real_path
from dbselect.files.validation import (
    FileIdentity,
    ValidationFailed,
    inspect_database,
    refusal_reason,
)

_lock = threading.RLock()
# Every spelling of a path seen -> its file's engine (one engine per file: a symlink,
# /proc/self/root/…, //… and the real path all reach the same one). Replaced as a whole
# under _lock, so readers need no lock and iteration is always safe.
_engines: dict[str, Engine] = {}
# (device, inode) -> engine: a hard link or bind mount of a cached file reuses its engine.
_by_file: dict[tuple[int, int], Engine] = {}
# path -> alias of every engine ever registered, kept after dispose (its settings stay too:
# a request in flight may still query the alias, and re-registration reuses it).
_known_aliases: dict[str, str] = {}
# Aliases of settings.DATABASES: their settings are the project's, never replaced.
_configured: set[str] = set()
logger = logging.getLogger("nukeworks.dbselect")

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


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

    def touch(self) -> None:
        self.last_used = time.time()
        self.requests += 1


# The backend of runtime aliases: Django's SQLite wrapper opening files with mode=rw.
ENGINE = "dbselect.engines.backend"


def alias_for_path(path: str) -> str:
    """Return the stable alias derived from an absolute path."""
    return "nw_" + hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def connection_options(network: bool) -> dict[str, object]:
    """Return the SQLite OPTIONS every NukeWorks connection gets."""
    config = get_config()
    # WAL needs shared memory between the processes using the file: it does not work over
    # SMB/NFS, so network paths keep the rollback journal.
    journal = "DELETE" if network else "WAL"
    synchronous = str(config["SYNCHRONOUS"]).upper()
    if synchronous not in SYNCHRONOUS_MODES:
        raise ImproperlyConfigured(
            f"DBSELECT['SYNCHRONOUS'] must be one of {', '.join(SYNCHRONOUS_MODES)}, "
            f"not {config['SYNCHRONOUS']!r}."
        )
    # foreign_keys=ON is set by Django's SQLite backend on every new connection.
    return {
        "timeout": float(config["BUSY_TIMEOUT"]),
        "transaction_mode": "IMMEDIATE",
        # trusted_schema=OFF: the file's triggers and views may not call functions that are
        # not innocuous (dbselect.engines.query_budget).
        "init_command": (
            f"PRAGMA journal_mode={journal};PRAGMA synchronous={synchronous};"
            "PRAGMA trusted_schema=OFF"
        ),
    }


def _settings_for(path: str, network: bool) -> dict[str, object]:
    template = connections.settings[DEFAULT_DB_ALIAS]
    cfg = copy.deepcopy(template)
    cfg["NAME"] = path
    # Runtime aliases open existing files only (see dbselect/backend).
    cfg["ENGINE"] = ENGINE
    cfg["OPTIONS"] = connection_options(network)
    cfg["TEST"] = {**template.get("TEST", {}), "NAME": None, "MIRROR": None}
    return cfg


def create_file(path: str) -> None:
    """Create an empty SQLite file at `path` if none exists (operator commands only).

    Runtime aliases never create files (see dbselect/backend); commands that make a new
    database, such as `initdb`, call this first.
    """
    import sqlite3

    if not os.path.exists(path):
        sqlite3.connect(path).close()


def _publish(alias: str, cfg: dict[str, object]) -> None:
    new = dict(connections.settings)
    new[alias] = cfg
    # cached_property storage: a plain attribute assignment swaps the dict atomically.
    connections.settings = new


def register(path: str, *, alias: str | None = None, display_name: str | None = None) -> Engine:
    """Register the file at `path` and return its engine; idempotent.

    The file is identified by what it is, not by how `path` is spelled: its real path (links
    resolved) names the engine, and a file already cached under another name (a hard link, a
    bind mount) gets the engine it has. Journal mode and "network file" are decided from the
    real path's file system, so no spelling can switch a file's journal for everybody.
    """
    global _engines, _by_file
    engine = _engines.get(path)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(path)
        if engine is not None:
            return engine
        real = real_path(path)
        engine = _engines.get(real) or _engine_of_file(real)
        if engine is not None:
            _engines = {**_engines, path: engine, real: engine}
            return engine
        # Before any connection can take a lock: raw reads of this file stop here.
        live_files.mark_live(real)
        network = is_network_path(real)
        # Re-registered after a dispose: keep the alias it had (e.g. its scanner label).
        alias = alias or _known_aliases.get(real)
        taken = connections.settings.get(alias) if alias else None
        # Sessions never use an alias with the stock backend (it may create the file), nor
        # one that belongs to another file: those paths get their own derived alias.
        if alias is None or (
            taken is not None and (taken.get("NAME") != real or taken.get("ENGINE") != ENGINE)
        ):
            alias = alias_for_path(real)
        cfg = _settings_for(real, network)
        current = connections.settings.get(alias)
        # A re-registration (after a dispose) takes the current connection settings, unless
        # the alias is one the project configured itself.
        if current is None or (
            alias not in _configured and current.get("OPTIONS") != cfg["OPTIONS"]
        ):
            _publish(alias, cfg)
        engine = Engine(
            path=real,
            alias=alias,
            network=network,
            journal_mode="delete" if network else "wal",
            identity=None,
            display_name=display_name,
        )
        _known_aliases[real] = alias
        _engines = {**_engines, path: engine, real: engine}
        key = _file_key(real)
        if key is not None:
            _by_file = {**_by_file, key: engine}
        return engine


def _file_key(path: str) -> tuple[int, int] | None:
    try:
        return live_files.key_of(os.stat(path))
    except OSError:
        return None


def _engine_of_file(path: str) -> Engine | None:
    """Return the engine of the file at `path` when it is cached under another name."""
    key = _file_key(path)
    return _by_file.get(key) if key is not None else None


def adopt_configured_aliases() -> None:
    """Give aliases configured in settings (e.g. `default`) the NukeWorks connection options."""
    with _lock:
        for alias, cfg in list(connections.settings.items()):
            if cfg.get("ENGINE") != "django.db.backends.sqlite3":
                continue
            name = str(cfg.get("NAME") or "")
            if not name or name == ":memory:" or name.startswith("file:"):
                continue
            path = os.path.normpath(os.path.abspath(name))
            _configured.add(alias)
            live_files.mark_live(path)
            network = _is_network(path)
            cfg["OPTIONS"] = {**connection_options(network), **cfg.get("OPTIONS", {})}
            # Not entered in the engine cache: configured aliases keep Django's stock backend
            # (operators' commands may create their file), so a session that selects this
            # file gets a runtime alias that never creates one.


def _is_network(path: str) -> bool:
    """Return True for a file on a network mount, decided from its real path's mount."""
    try:
        return is_network_path(real_path(path))
    except OSError:
        return False


def engines() -> list[Engine]:
    """Return the cached engines of this process (each file once)."""
    return list({id(e): e for e in _engines.values()}.values())


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
        dispose(engine.path, forget=False)
    # The request works on this file from here on: not while it is restored or migrated.
    gate.enter(engine.path)
    engine.identity = info.identity
    engine.display_name = info.display_name
    return engine, info


def open_engine(path: str) -> Engine:
    """Return a usable engine for a session's selected path, checking the file cheaply.

    A cached engine costs one stat() per request (the file is never opened here). A new
    engine (first use in this process) is fully validated. Dispose requests of other worker
    processes are applied first (a memory read when none). The calling thread then holds the
    file's maintenance gate until its request ends (raises gate.GateClosed while
    an administrator restores or migrates it).
    """
    apply_remote_disposals()
    engine = _engines.get(path)
    if engine is None or engine.identity is None:
        engine, _ = validate_and_register(path)
    else:
        _check_unchanged(engine)
        gate.enter(engine.path)
    tracking.mark_used(engine.alias)
    engine.touch()
    return engine


def _check_unchanged(engine: Engine) -> None:
    """Refuse the engine's file when it is gone or another file stands at its path.

    One stat() and nothing else: the file is never opened here (see dbselect.engines.live_files),
    and its header is not re-read, because a header read while a writer or a checkpoint
    extends the file can describe pages not yet written and refuse a healthy file. Damage
    inside the file surfaces as a SQLite error on the next query (dbselect.recovery).
    """
    try:
        st = os.stat(engine.path)
    except FileNotFoundError:
        _lost_identity(engine)
        raise DatabaseUnavailable("The database file no longer exists.") from None
    except OSError as exc:
        raise DatabaseUnavailable(f"The database file cannot be reached: {exc.strerror}.") from None
    current = FileIdentity.of(st)
    known = engine.identity
    assert known is not None
    if not known.same_file(current):
        _lost_identity(engine)
        raise DatabaseUnavailable("The database file was replaced by a different file.")
    if current.size < known.size:
        # NukeWorks never shrinks a file in use but by a restore (which re-validates it):
        # something truncated it. Validate it again, through SQLite only.
        if current.size == 0:
            raise DatabaseUnavailable(
                "The file is not a SQLite database any more: it is empty (0 bytes)."
            )
        try:
            reason = refusal_reason(inspect_database(engine.path))
        except ValidationFailed as exc:
            reason = exc.reason
        if reason:
            raise DatabaseUnavailable(reason)
    engine.identity = current


def _lost_identity(engine: Engine) -> None:
    """The file was renamed, deleted or replaced behind the app's back: stop writing to it.

    Closing every connection (here and in every worker) lets the last one checkpoint the WAL
    into the file it belongs to, wherever that file now is, instead of leaving acknowledged
    writes only in a -wal beside the old name. Sessions are refused from now on (fallback).
    """
    logger.warning("database file changed identity, disposing path=%s", engine.path)
    dispose(engine.path, everywhere=True)


def dispose(path: str, *, forget: bool = True, everywhere: bool = False) -> bool:
    """Close every connection of this process to `path`, in every thread, before its next use.

    Idle threads' connections close now; a thread busy with a request closes its own when the
    request ends or before it uses the path again. With `forget`, the engine leaves the cache;
    a session still on it re-opens it (with full validation) on its next request. With
    `everywhere`, every other worker process of this machine does the same (engine_store).
    Return False when the path was not cached here.
    """
    global _engines, _by_file
    if everywhere:
        from dbselect.engines.store import get_store

        get_store().record_disposals([path])
    with _lock:
        engine = _engines.get(path)
        alias = engine.alias if engine is not None else _alias_in_settings(path)
        if alias is not None:
            tracking.bump(alias)
        if engine is not None and forget:
            # Every spelling of the file goes, so its next use re-validates it.
            _engines = {p: e for p, e in _engines.items() if e is not engine}
            _by_file = {k: e for k, e in _by_file.items() if e is not engine}
    if alias is not None:
        tracking.close_everywhere(alias)
    return engine is not None


def _alias_in_settings(path: str) -> str | None:
    """Return the alias registered for `path` in Django's settings (a forgotten engine)."""
    alias = _known_aliases.get(path) or alias_for_path(path)
    cfg = connections.settings.get(alias)
    return alias if cfg is not None and cfg.get("NAME") == path else None


# -- dispose requests of other worker processes ---------------------------------------------

_UNSET = object()
_feed: object = _UNSET
_feed_lock = threading.Lock()


class _DisposeFeed:
    """This process's view of the shared dispose counter."""

    def __init__(self) -> None:
        from dbselect.engines.store import get_store

        self.store = get_store()
        # Requests made before this process started concern connections it never had.
        self.seen = self.store.sequence()

    def pending(self) -> bool:
        return self.store.sequence() > self.seen

    def take(self) -> list[str]:
        seq, paths = self.store.disposals_after(self.seen)
        self.seen = max(self.seen, seq)
        return paths


def _get_feed() -> _DisposeFeed | None:
    global _feed
    if _feed is _UNSET:
        with _feed_lock:
            if _feed is _UNSET:
                try:
                    _feed = _DisposeFeed()
                except OSError as exc:
                    logger.error("engine store unavailable, disposals stay per process: %s", exc)
                    _feed = None
    return _feed  # type: ignore[return-value]


def apply_remote_disposals() -> int:
    """Dispose here what another worker process asked to dispose; return how many paths."""
    feed = _get_feed()
    if feed is None or not feed.pending():
        return 0
    with _feed_lock:
        if not feed.pending():
            return 0
        try:
            paths = feed.take()
        except sqlite3.Error as exc:
            logger.error("engine store unreadable: %s", exc)
            return 0
    for path in paths:
        dispose(path)
    return len(paths)


@receiver(setting_changed)
def _reset_feed(*, setting: str, **kwargs: object) -> None:
    global _feed
    if setting == "DBSELECT":
        from dbselect.engines.store import reset_store

        reset_store()
        _feed = _UNSET
