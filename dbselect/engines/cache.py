"""The engine cache: one object that maps a *target* to a Django connection alias.

A target is what a session selected: the absolute path of a SQLite file, or
`postgresql:<label>` for a PostgreSQL database of the catalog (dbselect.catalog). Each file
gets one stable alias, registered in `django.db.connections` at runtime with a complete
settings dict copied from the normalised `default` alias (a bare dict fails with
KeyError: 'TIME_ZONE' on Django >= 4.1).

`EngineCache.open(target)` is the request path: it applies other workers' disposals (a memory
read when none), checks the cached file with one stat() (and re-reads the fingerprint only when
the file changed), and raises `DatabaseUnavailable` for every reason a file cannot be used.
Disposing reaches every thread of this process through `dbselect.engines.connections` and every
worker process through `dbselect.engines.workers`.
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

from django.db import DEFAULT_DB_ALIAS, connections

from dbselect import catalog
from dbselect.catalog import postgres
from dbselect.conf import SYNCHRONOUS_MODES, get_config
from dbselect.engines import connections as tracking
from dbselect.engines import fingerprints, gate, live_files, workers
from dbselect.files.paths import is_network_path, real_path
from dbselect.files.validation import (
    DatabaseInfo,
    FileIdentity,
    ValidationFailed,
    inspect_database,
    refusal_reason,
)

logger = logging.getLogger("nukeworks.dbselect")

# The backend of runtime aliases: Django's SQLite wrapper opening files with mode=rw.
ENGINE = "dbselect.engines.backend"

REPLACED = "The database file was overwritten by a different database."


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
    # (identity the file had when read, its creation mark): dbselect.engines.fingerprints.
    fingerprint_mark: tuple[FileIdentity | None, str] | None = None
    # "sqlite", or "postgresql" for a catalog entry (its `path` is then its target).
    kind: str = "sqlite"
    # A PostgreSQL engine validated since it was registered (a file's is its identity).
    validated: bool = False
    # What people may see of where it lives: a file's path, or a redacted URL.
    location: str = ""

    @property
    def is_file(self) -> bool:
        """True for a SQLite file, False for a PostgreSQL database."""
        return self.kind == "sqlite"

    @property
    def target(self) -> str:
        """The key a session stores for this database."""
        return self.path

    def touch(self) -> None:
        self.last_used = time.time()
        self.requests += 1


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
        # Reported by the system check dbselect.E004; never weaker than the default meanwhile.
        synchronous = "FULL"
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


def create_file(path: str) -> None:
    """Create an empty SQLite file at `path` if none exists (operator commands only).

    Runtime aliases never create files (see dbselect/engines/backend); commands that make a
    new database, such as `initdb`, call this first.
    """
    if not os.path.exists(path):
        sqlite3.connect(path).close()


def _settings_for(path: str, network: bool) -> dict[str, object]:
    template = connections.databases[DEFAULT_DB_ALIAS]
    cfg = copy.deepcopy(template)
    cfg["NAME"] = path
    # Runtime aliases open existing files only (see dbselect/engines/backend).
    cfg["ENGINE"] = ENGINE
    cfg["OPTIONS"] = connection_options(network)
    cfg["TEST"] = {**template.get("TEST", {}), "NAME": None, "MIRROR": None}
    return cfg


def publish_alias(alias: str, cfg: dict[str, object]) -> None:
    """Add or replace `alias` in Django's connection settings, copy-on-write.

    The one place that writes Django's connection settings. Django offers no public way to add
    a database at runtime: `connections.databases` is the dict `ConnectionHandler.settings` (a
    cached_property) computed once. Inserting into it while another thread iterates it
    (`connections.all()`, Django's close_old_connections) raises "dictionary changed size
    during iteration" (measured 219 times in 4 s), so a new dict replaces the cached one in a
    single attribute assignment. tests/test_engine_cache.py fails loudly if Django changes this.
    """
    new = dict(connections.databases)
    new[alias] = cfg
    connections.settings = new


class EngineCache:
    """Every database this process works on, keyed by target; built in AppConfig.ready()."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # Every spelling of a target seen -> its file's engine (one engine per file: a symlink,
        # /proc/self/root/…, //… and the real path all reach the same one). Replaced as a
        # whole under _lock, so readers need no lock and iteration is always safe.
        self._engines: dict[str, Engine] = {}
        # (device, inode) -> engine: a hard link or bind mount of a cached file reuses it.
        self._by_file: dict[tuple[int, int], Engine] = {}
        # real path -> alias of every engine ever registered, kept after dispose (its settings
        # stay too: a request in flight may still query the alias; re-registration reuses it).
        self._known_aliases: dict[str, str] = {}
        # Aliases of settings.DATABASES: their settings are the project's, never replaced.
        self._configured: set[str] = set()
        self._feed = workers.DisposeFeed()

    # -- the request path -------------------------------------------------------------------

    def open(self, target: str, *, fingerprint: str | None = None) -> Engine:
        """Return a usable engine for a session's target, checking the file cheaply.

        A cached engine costs one stat() and a dictionary lookup (the file is never opened
        here); a new one (first use in this process) is fully validated. With `fingerprint`
        (the one the session saw first), a file overwritten in place by another database is
        refused. Raise DatabaseUnavailable for any file that cannot be used, and
        gate.GateClosed while an administrator restores or migrates it; otherwise the calling
        thread holds the file's maintenance gate until its request ends.
        """
        self.apply_remote_disposals()
        if catalog.is_target(target):
            return self._open_catalog(target)
        engine = self._engines.get(target)
        if engine is None or engine.identity is None:
            engine, _ = self.validate_and_register(target)
        else:
            self._check_unchanged(engine)
            gate.enter(engine.path)
        current = self.fingerprint(engine)
        if fingerprint is not None and current is not None and current != fingerprint:
            # Same path, same inode, another database: never work on it silently.
            self.dispose(engine.path)
            raise DatabaseUnavailable(REPLACED)
        tracking.mark_used(engine.alias)
        engine.touch()
        return engine

    def _open_catalog(self, target: str) -> Engine:
        """The request path of a PostgreSQL database: a dictionary lookup once validated.

        A changed or removed catalog entry disposes its engine everywhere (the dispose feed),
        so the next request re-validates it against the catalog.
        """
        engine = self._engines.get(target)
        if engine is None or not engine.validated:
            engine, _ = self.validate_and_register(target)
        else:
            gate.enter(engine.path)
        tracking.mark_used(engine.alias)
        engine.touch()
        return engine

    @staticmethod
    def fingerprint(engine: Engine) -> str | None:
        """Return the creation mark of the engine's file, re-read only when the file changed."""
        if not engine.is_file:
            return None
        identity = engine.identity
        known = engine.fingerprint_mark
        if known is not None and identity is not None and known[0] == identity:
            return known[1]
        mark = fingerprints.read_fingerprint(engine.path)
        if mark is not None:
            # One attribute, so a concurrent reader never pairs an identity with another mark.
            engine.fingerprint_mark = (identity, mark)
        return mark

    def validate_and_register(
        self, target: str, info: DatabaseInfo | None = None
    ) -> tuple[Engine, DatabaseInfo]:
        """Validate `target`, then register it and enter its gate.

        A caller that already validated the file passes its `info` (and has refused it when
        `refusal_reason(info)` said so), so a selection reads the file once. Raise
        DatabaseUnavailable when it is unusable, gate.GateClosed under maintenance.
        """
        if catalog.is_target(target):
            return self._validate_catalog(target, info)
        if info is None:
            try:
                info = inspect_database(target)
            except ValidationFailed as exc:
                raise DatabaseUnavailable(exc.reason) from None
            reason = refusal_reason(info)
            if reason:
                raise DatabaseUnavailable(reason)
        engine = self.register(target, display_name=info.display_name)
        if engine.identity is not None and not engine.identity.same_file(info.identity):
            # A different file now stands at this path: connections to the old one must go.
            self.dispose(engine.path, forget=False)
        # The request works on this file from here on: not while it is restored or migrated.
        gate.enter(engine.path)
        engine.identity = info.identity
        engine.display_name = info.display_name
        return engine, info

    def _validate_catalog(
        self, target: str, info: DatabaseInfo | None
    ) -> tuple[Engine, DatabaseInfo]:
        entry = catalog.entry_for_target(target)
        if entry is None:
            raise DatabaseUnavailable(
                "This PostgreSQL database is no longer in the catalog (an operator removed it)."
            )
        if info is None:
            try:
                info = postgres.inspect(target, entry.url)
            except ValidationFailed as exc:
                raise DatabaseUnavailable(exc.reason) from None
            reason = refusal_reason(info)
            if reason:
                raise DatabaseUnavailable(reason)
        engine = self.register_entry(entry, display_name=info.display_name)
        gate.enter(engine.path)
        engine.display_name = info.display_name or entry.display_name or None
        engine.validated = True
        return engine, info

    def _check_unchanged(self, engine: Engine) -> None:
        """Refuse the engine's file when it is gone or another file stands at its path.

        One stat() and nothing else: the file is never opened here (see live_files), and its
        header is not re-read, because a header read while a writer or a checkpoint extends
        the file can describe pages not yet written and refuse a healthy file. Damage inside
        the file surfaces as a SQLite error on the next query (dbselect.recovery).
        """
        try:
            st = os.stat(engine.path)
        except FileNotFoundError:
            self._lost_identity(engine)
            raise DatabaseUnavailable("The database file no longer exists.") from None
        except OSError as exc:
            raise DatabaseUnavailable(
                f"The database file cannot be reached: {exc.strerror}."
            ) from None
        current = FileIdentity.of(st)
        known = engine.identity
        assert known is not None
        if not known.same_file(current):
            self._lost_identity(engine)
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

    def _lost_identity(self, engine: Engine) -> None:
        """The file was renamed, deleted or replaced behind the app's back: stop writing to it.

        Closing every connection (here and in every worker) lets the last one checkpoint the
        WAL into the file it belongs to, wherever that file now is, instead of leaving
        acknowledged writes only in a -wal beside the old name.
        """
        logger.warning("database file changed identity, disposing path=%s", engine.path)
        self.dispose(engine.path, everywhere=True)

    # -- registration -----------------------------------------------------------------------

    def register(
        self, target: str, *, alias: str | None = None, display_name: str | None = None
    ) -> Engine:
        """Register the file at `target` and return its engine; idempotent.

        The file is identified by what it is, not by how `target` is spelled: its real path
        (links resolved) names the engine, and a file already cached under another name (a
        hard link, a bind mount) gets the engine it has. Journal mode and "network file" are
        decided from the real path's file system, so no spelling can switch a file's journal.
        """
        engine = self._engines.get(target)
        if engine is not None:
            return engine
        if catalog.is_target(target):
            entry = catalog.entry_for_target(target)
            if entry is None:
                raise DatabaseUnavailable(f"No database is registered as {target!r}.")
            return self.register_entry(entry, display_name=display_name)
        with self._lock:
            engine = self._engines.get(target)
            if engine is not None:
                return engine
            real = real_path(target)
            engine = self._engines.get(real) or self._engine_of_file(real)
            if engine is not None:
                self._engines = {**self._engines, target: engine, real: engine}
                return engine
            # Before any connection can take a lock: raw reads of this file stop here.
            live_files.mark_live(real)
            network = is_network_path(real)
            alias = self._alias_for(real, alias)
            cfg = _settings_for(real, network)
            current = connections.databases.get(alias)
            # A re-registration (after a dispose) takes the current connection settings,
            # unless the alias is one the project configured itself.
            if current is None or (
                alias not in self._configured and current.get("OPTIONS") != cfg["OPTIONS"]
            ):
                publish_alias(alias, cfg)
            engine = Engine(
                path=real,
                alias=alias,
                network=network,
                journal_mode="delete" if network else "wal",
                identity=None,
                display_name=display_name,
                location=real,
            )
            self._known_aliases[real] = alias
            self._engines = {**self._engines, target: engine, real: engine}
            key = _file_key(real)
            if key is not None:
                self._by_file = {**self._by_file, key: engine}
            return engine

    def register_entry(
        self, entry: catalog.CatalogEntry, *, display_name: str | None = None
    ) -> Engine:
        """Register a PostgreSQL catalog entry under its label as alias; idempotent.

        An entry whose URL changed since it was registered (removed and added again) gets
        the new settings, and connections to the old database are closed first.
        """
        target = entry.target
        with self._lock:
            cfg = catalog.django_settings(entry, connections.databases[DEFAULT_DB_ALIAS])
            engine = self._engines.get(target)
            alias = engine.alias if engine is not None else self._known_aliases.get(target)
            if alias is None:
                taken = connections.databases.get(entry.label)
                alias = entry.label
                if taken is not None and (
                    entry.label in self._configured or taken.get("ENGINE") != cfg["ENGINE"]
                ):
                    alias = alias_for_path(target)
            current = connections.databases.get(alias)
            if current != cfg:
                if current is not None:
                    tracking.bump(alias)
                    tracking.close_everywhere(alias)
                publish_alias(alias, cfg)
            if engine is not None and engine.location == entry.redacted_url:
                return engine
            engine = Engine(
                path=target,
                alias=alias,
                network=True,
                journal_mode="",
                identity=None,
                display_name=display_name or entry.display_name or None,
                kind=catalog.KIND,
                location=entry.redacted_url,
            )
            self._known_aliases[target] = alias
            self._engines = {**self._engines, target: engine}
            return engine

    def _alias_for(self, real: str, wanted: str | None) -> str:
        """Return the alias of the file at `real`: `wanted` (a label) when it is free for it."""
        # Re-registered after a dispose: keep the alias it had (e.g. its scanner label).
        alias = wanted or self._known_aliases.get(real)
        taken = connections.databases.get(alias) if alias else None
        # Sessions never use an alias with the stock backend (it may create the file), nor
        # one that belongs to another file: those paths get their own derived alias.
        if alias is None or (
            taken is not None and (taken.get("NAME") != real or taken.get("ENGINE") != ENGINE)
        ):
            alias = alias_for_path(real)
        return alias

    def _engine_of_file(self, path: str) -> Engine | None:
        """Return the engine of the file at `path` when it is cached under another name."""
        key = _file_key(path)
        return self._by_file.get(key) if key is not None else None

    def adopt_configured_aliases(self) -> None:
        """Give aliases configured in settings (e.g. `default`) the NukeWorks options."""
        with self._lock:
            for alias, cfg in list(connections.databases.items()):
                if cfg.get("ENGINE") != "django.db.backends.sqlite3":
                    continue
                name = str(cfg.get("NAME") or "")
                if not name or name == ":memory:" or name.startswith("file:"):
                    continue
                path = os.path.normpath(os.path.abspath(name))
                self._configured.add(alias)
                live_files.mark_live(path)
                cfg["OPTIONS"] = {**connection_options(_is_network(path)), **cfg.get("OPTIONS", {})}
                # Not entered in the cache: configured aliases keep Django's stock backend
                # (operators' commands may create their file), so a session that selects this
                # file gets a runtime alias that never creates one.

    # -- lookups ----------------------------------------------------------------------------

    def get(self, target: str) -> Engine | None:
        """Return the engine of `target` if it is cached."""
        return self._engines.get(target)

    def all(self) -> list[Engine]:
        """Return the cached engines of this process (each file once)."""
        return list({id(e): e for e in self._engines.values()}.values())

    # -- disposing --------------------------------------------------------------------------

    def dispose(self, target: str, *, forget: bool = True, everywhere: bool = False) -> bool:
        """Close every connection of this process to `target`, in every thread.

        Idle threads' connections close now; a thread busy with a request closes its own when
        the request ends or before it uses the target again. With `forget`, the engine leaves
        the cache; a session still on it re-opens it (fully validated) on its next request.
        With `everywhere`, every other worker process of this machine does the same. Return
        False when the target was not cached here.
        """
        if everywhere:
            self.note_own_disposal(workers.get_store().record_disposals([target]))
        with self._lock:
            engine = self._engines.get(target)
            alias = engine.alias if engine is not None else self._alias_in_settings(target)
            if alias is not None:
                tracking.bump(alias)
            if engine is not None and forget:
                # Every spelling of the file goes, so its next use re-validates it.
                self._engines = {p: e for p, e in self._engines.items() if e is not engine}
                self._by_file = {k: e for k, e in self._by_file.items() if e is not engine}
        if alias is not None:
            tracking.close_everywhere(alias)
        return engine is not None

    def _alias_in_settings(self, path: str) -> str | None:
        """Return the alias registered for `path` in Django's settings (a forgotten engine)."""
        if catalog.is_target(path):
            return self._known_aliases.get(path)
        alias = self._known_aliases.get(path) or alias_for_path(path)
        cfg = connections.databases.get(alias)
        return alias if cfg is not None and cfg.get("NAME") == path else None

    def note_own_disposal(self, seq: int) -> None:
        """Record that this process made dispose request `seq` (and applies it itself): the
        feed will not bring it back to close connections opened after it."""
        self._feed.note_own(seq)

    def apply_remote_disposals(self) -> int:
        """Dispose here what another worker process asked to dispose; return how many."""
        targets = self._feed.take()
        for target in targets:
            self.dispose(target)
        return len(targets)

    def reset(self) -> None:
        """Start again from the settings as they are now (tests; `setting_changed`).

        The engines stay cached (their connections belong to their threads); the shared store
        and this process's place in its dispose feed are re-read from the settings.
        """
        workers.reset_store()
        self._feed = workers.DisposeFeed()


def _file_key(path: str) -> tuple[int, int] | None:
    try:
        return live_files.key_of(os.stat(path))
    except OSError:
        return None


def _is_network(path: str) -> bool:
    """Return True for a file on a network mount, decided from its real path's mount."""
    try:
        return is_network_path(real_path(path))
    except OSError:
        return False
