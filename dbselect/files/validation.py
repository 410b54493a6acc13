"""Read-only validation of a database file chosen by a user.

The file is untrusted: its header is checked before SQLite opens it, it is opened read-only
(`mode=ro`, and `immutable=1` for a checkpointed WAL file so no `-wal`/`-shm` appear beside
it), with `trusted_schema=OFF`, `cell_size_check=ON` and `query_only=ON`, and only plain
tables are read (never a view, so nothing defined by the file runs). It reads the header,
`sqlite_master`, `django_migrations` and two small lookups: well under a millisecond, whatever
the file's size.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field

from dbselect.conf import get_config
from dbselect.engines import live_files
from dbselect.files.paths import PathRejected, bounded, sqlite_uri
from dbselect.files.schema import Migration, SchemaState, compare, migration_names

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_SIZE = 100
DISPLAY_NAME_KEY = "db_display_name"
SETTINGS_TABLE = "system_settings"
# Stamped by the builder of a new database (provisioning): "building" first, "ready" last.
# A file without it (made before seed packages existed, or by initdb) counts as ready.
SEED_STATUS_KEY = "seed_status"
SEED_READY = "ready"
# Seconds the SQLite part of validation may run before it is interrupted.
VALIDATION_TIME_LIMIT = 2.0


class ValidationFailed(Exception):
    """The file cannot be used; `reason` says why in words a user understands."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SqliteHeader:
    """The parts of the 100-byte SQLite header that validation needs."""

    page_size: int
    wal: bool
    page_count: int | None


@dataclass(frozen=True)
class FileIdentity:
    """What identifies one file on disk, and what changes when it is written."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def same_file(self, other: FileIdentity) -> bool:
        return (self.device, self.inode) == (other.device, other.inode)


@dataclass(frozen=True)
class DatabaseInfo:
    """What validation learned about a database file."""

    path: str
    state: SchemaState
    display_name: str | None
    # None for a PostgreSQL database (dbselect.catalog.postgres): it is no file.
    identity: FileIdentity | None
    # None for a file this process works on (its header is read by SQLite only).
    header: SqliteHeader | None
    is_empty: bool = False
    pending: tuple[Migration, ...] = ()
    unknown: tuple[Migration, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    # system_settings.seed_status, None when the file has none (then it counts as ready).
    seed_status: str | None = None

    @property
    def usable(self) -> bool:
        """Return True when the file can be switched to at once."""
        return self.state is SchemaState.UP_TO_DATE and not_ready_reason(self) is None


def parse_header(data: bytes, size: int) -> SqliteHeader:
    """Check a SQLite header against the file size; raise ValidationFailed if it is wrong."""
    if len(data) < HEADER_SIZE or not data.startswith(SQLITE_MAGIC):
        raise ValidationFailed(
            "The file is not a SQLite database (its header is wrong; is it encrypted or "
            "another kind of file?)."
        )
    page_size = int.from_bytes(data[16:18], "big")
    if page_size == 1:
        page_size = 65536
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise ValidationFailed("The SQLite header is corrupt (invalid page size).")
    write_version, read_version = data[18], data[19]
    if write_version not in (1, 2) or read_version not in (1, 2):
        raise ValidationFailed("The SQLite header is corrupt (unknown file format version).")
    page_count: int | None = None
    # The in-header size is valid only when the change counter matches "version valid for".
    if data[24:28] == data[92:96]:
        page_count = int.from_bytes(data[28:32], "big") or None
    if size % page_size:
        raise ValidationFailed(
            f"The file is truncated or damaged: {size} bytes is not a whole number of "
            f"{page_size}-byte pages."
        )
    if page_count is not None and page_count * page_size > size:
        raise ValidationFailed(
            f"The file is truncated: its header describes {page_count} pages "
            f"but the file holds only {size // page_size}."
        )
    return SqliteHeader(page_size=page_size, wal=write_version == 2, page_count=page_count)


def read_header(path: str) -> tuple[SqliteHeader | None, FileIdentity]:
    """Check `path` is a regular file and parse its header, read-only, never creating it.

    The header of a file this process works on (a *live* file, see dbselect.engines.live_files) is
    not read raw: that would release SQLite's locks. It is None then, and validation reads
    the file through SQLite alone, which checks the header itself.
    """

    def _read() -> tuple[bytes | None, os.stat_result]:
        try:
            raw = live_files.read_prefix(path, HEADER_SIZE)
        except live_files.LiveFile as live:
            return None, live.stat
        except live_files.NotRegularFile as exc:
            if exc.is_dir:
                raise ValidationFailed("This path is a folder, not a database file.") from None
            raise ValidationFailed(
                "This path is not a regular file (it is a device, pipe or socket)."
            ) from None
        return raw.data, raw.stat

    try:
        data, st = bounded(_read)
    except PathRejected as exc:
        raise ValidationFailed(str(exc)) from None
    except FileNotFoundError:
        raise ValidationFailed("No file exists at this path.") from None
    except IsADirectoryError:
        raise ValidationFailed("This path is a folder, not a database file.") from None
    except PermissionError:
        raise ValidationFailed("The server is not allowed to read this file.") from None
    except OSError as exc:
        raise ValidationFailed(f"The file cannot be opened: {exc.strerror or exc}.") from None
    if data is None:
        return None, FileIdentity.of(st)
    if st.st_size == 0 and not data:
        raise ValidationFailed("The file is empty (0 bytes), not a SQLite database.")
    # Kernel files such as /proc/self/environ report size 0 but have content: the header
    # check refuses them without ever showing what they hold.
    return parse_header(data, st.st_size), FileIdentity.of(st)


def readonly_uri(path: str, *, immutable: bool = False) -> str:
    """Return a read-only SQLite URI for `path`, with every special character escaped."""
    return sqlite_uri(path, "ro", immutable=immutable)


def needs_immutable(path: str, header: SqliteHeader | None) -> bool:
    """Return True when reading `path` with plain `mode=ro` would create files beside it.

    A WAL-mode file needs both `-wal` and `-shm` to be read with `mode=ro`; SQLite creates
    whichever is missing and leaves it behind after close (measured with SQLite 3.40). Such
    a file is read with `immutable=1` instead, which creates nothing: with no `-shm` there is
    no live writer, and WAL content not yet checkpointed (a crashed writer's) is not seen, so
    validation can only err towards "needs migration", never towards accepting a newer schema
    it did not read.
    """
    if header is not None and not header.wal:
        return False
    # No header (a file this process works on, or a new file at a reused inode): read it as
    # if it were in WAL mode, so that nothing is created beside it either.
    return not (os.path.exists(path + "-wal") and os.path.exists(path + "-shm"))


# Limits for reading an untrusted file: a hostile schema cannot make validation allocate
# much memory or parse enormous statements.
_LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: 1_000_000,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 1_000_000,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 100,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 10,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
}
# SQLite virtual-machine steps between two checks of the validation deadline.
_PROGRESS_STEPS = 10_000


def open_readonly(
    path: str, header: SqliteHeader | None, timeout: float = 2.0
) -> sqlite3.Connection:
    """Open an untrusted file read-only without creating anything beside it."""
    conn = sqlite3.connect(
        readonly_uri(path, immutable=needs_immutable(path, header)),
        uri=True,
        timeout=timeout,
        isolation_level=None,
        check_same_thread=False,
        # A validation connection to a file this process writes must not close while another
        # thread's connection takes its first lock: that close would release it (live_files).
        factory=live_files.GuardedConnection,
    )
    try:
        for limit, value in _LIMITS.items():
            conn.setlimit(limit, value)
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA cell_size_check = ON")
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _describe_sqlite_error(exc: sqlite3.Error) -> str:
    message = str(exc)
    if "not a database" in message or "encrypted" in message:
        return "The file is not a SQLite database (or it is encrypted)."
    if "malformed" in message or "corrupt" in message:
        return f"The database file is corrupt ({message})."
    if "locked" in message or "busy" in message:
        return "The database is locked by another program; try again in a moment."
    if "readonly" in message:
        # Reading needs a write only to roll back a hot journal left by a crashed writer.
        return (
            "The file has an unfinished transaction (a journal left by a program that "
            "stopped while writing); open it once with write access to recover it."
        )
    if "interrupted" in message:
        return "Reading the file took too long; it was not validated."
    if "unable to open" in message:
        return "The server cannot open this file."
    return f"SQLite could not read the file ({message})."


def inspect_database(path: str) -> DatabaseInfo:
    """Validate the file at an already-normalised absolute `path`, read-only.

    Raise ValidationFailed when it is not a readable SQLite database; otherwise return its
    schema state (which may still forbid switching to it), display name and warnings.
    """
    header, identity = read_header(path)

    def _inspect() -> DatabaseInfo:
        conn = open_readonly(path, header)
        # A hostile schema cannot keep this thread busy: abort after the time limit.
        deadline = time.monotonic() + VALIDATION_TIME_LIMIT
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
        try:
            if header is None:
                _check_size_through_sqlite(conn, path)
            return _inspect_open(conn, path, header, identity)
        finally:
            conn.close()

    try:
        # Opening and reading both run under the time limit: a network share that stops
        # answering half-way through must not hang the worker either.
        return bounded(_inspect)
    except PathRejected as exc:
        raise ValidationFailed(str(exc)) from None
    except sqlite3.Error as exc:
        raise ValidationFailed(_describe_sqlite_error(exc)) from None


def _check_size_through_sqlite(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a live file shorter than SQLite says it is (truncated behind our back).

    Asked inside one read transaction, and only when the WAL is empty: then every page of
    the database must be in the main file. With frames in the WAL, pages past the end of
    the file may legitimately live there, so nothing is concluded.
    """
    conn.execute("BEGIN")
    try:
        page_count = int(conn.execute("PRAGMA page_count").fetchone()[0])
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        try:
            wal_size = os.stat(path + "-wal").st_size
        except FileNotFoundError:
            wal_size = 0
        size = os.stat(path).st_size
    finally:
        conn.execute("COMMIT")
    if wal_size == 0 and page_count * page_size > size:
        raise ValidationFailed(
            f"The file is truncated: SQLite expects {page_count} pages "
            f"but the file holds only {size // page_size}."
        )


def _inspect_open(
    conn: sqlite3.Connection, path: str, header: SqliteHeader | None, identity: FileIdentity
) -> DatabaseInfo:
    tables = {
        name
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
        ).fetchall()
        if not (sql or "").upper().startswith("CREATE VIRTUAL")
    }
    if "django_migrations" not in tables:
        return DatabaseInfo(path, SchemaState.NOT_NUKEWORKS, None, identity, header)
    _refuse_untrusted_schema(conn)
    applied = {
        (str(app), str(name))
        for app, name in conn.execute("SELECT app, name FROM django_migrations").fetchall()
    }
    stored: dict[str, object] = {}
    if SETTINGS_TABLE in tables:
        stored = dict(
            conn.execute(
                f'SELECT key, value FROM "{SETTINGS_TABLE}" WHERE key IN (?, ?)',
                (DISPLAY_NAME_KEY, SEED_STATUS_KEY),
            ).fetchall()
        )
    return database_info(
        path, applied, stored, _is_empty(conn, tables), identity=identity, header=header
    )


def database_info(
    path: str,
    applied: set[Migration],
    stored: dict[str, object],
    is_empty: bool,
    *,
    identity: FileIdentity | None = None,
    header: SqliteHeader | None = None,
) -> DatabaseInfo:
    """Return what validation learned of a database that has `django_migrations`, for a file
    or a PostgreSQL database alike.

    `applied` holds its migrations, `stored` its DISPLAY_NAME_KEY and SEED_STATUS_KEY rows of
    SETTINGS_TABLE (empty without that table), `is_empty` whether it has no row of
    DBSELECT["EMPTY_MARKER_TABLE"].
    """
    comparison = compare(applied)
    display_name = None
    seed_status = None
    name = stored.get(DISPLAY_NAME_KEY)
    if isinstance(name, str) and name.strip():
        display_name = name.strip()
    if SEED_STATUS_KEY in stored:
        seed_status = str(stored[SEED_STATUS_KEY] or "")[:100]
    warnings = (
        (str(get_config()["EMPTY_MARKER_MESSAGE"]),)
        if (is_empty and comparison.state is not SchemaState.NOT_NUKEWORKS)
        else ()
    )
    return DatabaseInfo(
        path=path,
        state=comparison.state,
        display_name=display_name,
        identity=identity,
        header=header,
        is_empty=is_empty,
        pending=comparison.pending,
        unknown=comparison.unknown,
        warnings=warnings,
        seed_status=seed_status,
    )


def _is_empty(conn: sqlite3.Connection, tables: set[str]) -> bool:
    """Return True when the file holds no row of DBSELECT["EMPTY_MARKER_TABLE"] (if one is set).

    The marker is the project's main table (NukeWorks: its companies): a database without a
    row in it is likely not the one the user meant, and the selector says so.
    """
    table = get_config()["EMPTY_MARKER_TABLE"]
    if not table:
        return False
    if table not in tables:
        return True
    quoted = table.replace('"', '""')
    return conn.execute(f'SELECT 1 FROM "{quoted}" LIMIT 1').fetchone() is None


def _refuse_untrusted_schema(conn: sqlite3.Connection) -> None:
    """Refuse a file that defines triggers or views: NukeWorks creates neither.

    A trigger runs inside NukeWorks' own writes and a view inside any query naming it, with
    the server's time and functions; `trusted_schema=OFF` and the query time budget limit
    what they can do, but a file that carries them was not made by NukeWorks alone.
    """
    rows = conn.execute(
        "SELECT type, name, tbl_name FROM sqlite_master "
        "WHERE type IN ('trigger', 'view') ORDER BY type, name LIMIT 6"
    ).fetchall()
    if not rows:
        return
    named = [
        f'{kind} "{name}"' + (f' on "{table}"' if kind == "trigger" else "")
        for kind, name, table in rows[:5]
    ]
    more = ", …" if len(rows) > 5 else ""
    raise ValidationFailed(
        "The file defines triggers or views that NukeWorks did not create "
        f"({', '.join(named)}{more}). They would run on the server, so the file is not opened."
    )


def refusal_reason(info: DatabaseInfo) -> str | None:
    """Return why a session cannot switch to this file now, or None when it can."""
    if info.state is SchemaState.NOT_NUKEWORKS:
        if info.identity is None:
            label = info.path.split(":", 1)[-1]
            return (
                "This PostgreSQL database is not a NukeWorks one yet (it has no NukeWorks "
                f"migrations): an operator sets it up with manage.py migrate --database {label}."
            )
        return (
            "This is a SQLite database, but not a NukeWorks one (it has no NukeWorks migrations)."
        )
    reason = not_ready_reason(info)
    if reason:
        return reason
    if info.state is SchemaState.NEWER:
        names = migration_names(info.unknown)
        return (
            "This database was created by a newer version of NukeWorks "
            f"(unknown migrations: {names}). Upgrade NukeWorks to open it."
        )
    if info.state is SchemaState.NEEDS_MIGRATION:
        names = migration_names(info.pending)
        return f"This database needs migration before it can be used: {names}."
    return None


def not_ready_reason(info: DatabaseInfo) -> str | None:
    """Return why a file whose building never finished is not served, or None when it is ready.

    The builder stamps seed_status "building" before it fills the file and "ready" last, so
    any other value means the file is half-made (its building was interrupted, or it was
    copied out of the folder while being built). A file with no seed_status counts as ready.
    """
    if info.seed_status is None or info.seed_status == SEED_READY:
        return None
    return (
        f"This database was never finished: its building stopped before the end (seed status "
        f"“{info.seed_status}”, not “{SEED_READY}”), so it is not opened. An operator can "
        "rebuild or discard it from its progress page, or with manage.py createdb --retry / "
        "manage.py discarddb."
    )
