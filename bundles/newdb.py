"""Build a new database file, databases/<label>/nukeworks.sqlite, from a package (or empty).

The file is built under a temporary name in its folder, migrated, seeded, checked and stamped
(`system_settings`: `seed_name`, `seed_version`, `seed_status` "building" at the start and
"ready" at the very end), and only then moved into place with a link that refuses an existing
name: nothing is ever overwritten and nobody can select a half-built file (the scanner only
sees `nukeworks.sqlite`). A failed build removes its temporary file; calling again after an
interrupted run (a killed worker) cleans the stale temporary file and starts over, so the
build is idempotent by label. Two builds of one label never run at once (a lock file).

A package's attachment files go straight into the store of the final name
(databases/<label>/payloads/, see dbselect.layout.payload_dir_for), not one of the temporary
file: they are in place before the file is. A failed build removes that store when it made it.

`build_new_postgres_database` does the same on a PostgreSQL server: CREATE DATABASE under a
temporary name (`<dbname>__building_<hash of the label>`, ours by its name: a stale one of an
interrupted build of the same label is dropped and made again), migrated and seeded through a
connection alias of its own, stamped ready, renamed to its final name (an existing database of
that name is never touched), and only then registered in the catalog under the label: so it
is never selectable before it is ready. A failed build drops its database. Its payloads and
snapshots live in databases/<label>/ as a file's do.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import sqlite3
from pathlib import Path

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.http import HttpRequest

from bundles.package import BundleError, Package, Progress, apply
from dbselect import catalog, engines, state
from dbselect.catalog import postgres, registry
from dbselect.catalog.dsn import DBNAME_PATTERN, PostgresURL
from dbselect.conf import get_config
from dbselect.engines.cache import publish_alias
from dbselect.files.locks import LockTimeout, flocked
from dbselect.files.validation import ValidationFailed, open_readonly, read_header
from dbselect.layout import payload_dir_for, snapshot_dir_for
from dbselect.models import SystemSetting

LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
SEED_NAME = "seed_name"
SEED_VERSION = "seed_version"
SEED_STATUS = "seed_status"
BUILDING = "building"
READY = "ready"
TEMP_SUFFIX = ".building"
LOCK_NAME = ".build.lock"
# A PostgreSQL database is built under `<dbname>__building_<8 hex>` and renamed when ready.
PG_TEMP_MARK = "__building"
# The connection alias a PostgreSQL database is built through (one per label).
PG_BUILD_ALIAS = "nwbuild_{label}"
_COMPANIONS = ("", "-wal", "-shm", "-journal")


class HashedPassword(str):
    """An admin password that is already a Django password hash ("copy my current login")."""


def database_path(label: str) -> Path:
    """Return databases/<label>/nukeworks.sqlite for a valid label; raise BundleError."""
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise BundleError(
            f"Invalid label {label!r}: 1-40 letters, digits, '-' or '_', starting with a "
            "letter or digit."
        )
    config = get_config()
    return Path(config["DATABASES_DIR"]) / label / config["DATABASE_FILENAME"]


def temp_path_for(final: Path) -> Path:
    """Return the temporary name a database is built under, beside its final name."""
    return final.parent / f".{final.name}{TEMP_SUFFIX}"


def remove_file(path: Path) -> None:
    """Remove a (closed) database file and its -wal/-shm/-journal companions."""
    engines.dispose(str(path))
    for suffix in _COMPANIONS:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _ready_and_same(final: Path, package: Package | None) -> bool:
    """Return True when `final` is a finished build of `package` (a retried job's result)."""
    try:
        # Read-only through dbselect's opener: nothing is created beside the file.
        header, _ = read_header(str(final))
        conn = open_readonly(str(final), header)
        try:
            rows = dict(
                conn.execute(
                    "SELECT key, value FROM system_settings WHERE key IN (?, ?, ?)",
                    (SEED_NAME, SEED_VERSION, SEED_STATUS),
                ).fetchall()
            )
        finally:
            conn.close()
    except (sqlite3.Error, ValidationFailed, OSError):
        return False
    name = package.name if package else ""
    version = str(package.version) if package else ""
    return rows == {SEED_NAME: name, SEED_VERSION: version, SEED_STATUS: READY}


def build_new_database(
    label: str,
    *,
    package: Package | None,
    display_name: str,
    admin: tuple[str, str] | None,
    progress: Progress | None = None,
    exist_ok: bool = False,
) -> Path:
    """Build databases/<label>/nukeworks.sqlite from `package` (None: empty); return its path.

    `admin` is (username, password) of the first administrator (a superuser); wrap the
    password in `HashedPassword` to store an existing hash as is. An existing label is
    refused (BundleError) unless `exist_ok` and it is a finished build of the same package
    (a retried job), which is returned unchanged. `progress(done, total)` follows the rows.
    """
    final = database_path(label)
    if final.exists() and not exist_ok:
        raise BundleError(f"A database with the label {label!r} already exists.")
    folder = final.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with flocked(folder / LOCK_NAME, exclusive=True, timeout=0):
            if os.path.lexists(final):
                if exist_ok and _ready_and_same(final, package):
                    return final
                raise BundleError(f"A database with the label {label!r} already exists.")
            return _build(final, package, display_name, admin, progress)
    except LockTimeout:
        raise BundleError(f"The database {label!r} is being built by someone else.") from None


def _build(
    final: Path,
    package: Package | None,
    display_name: str,
    admin: tuple[str, str] | None,
    progress: Progress | None,
) -> Path:
    temp = temp_path_for(final)
    # A stale file of an interrupted build: nobody else builds this label (we hold the lock).
    remove_file(temp)
    store = payload_dir_for(final)
    new_store = not os.path.lexists(store)
    engines.create_file(str(temp))
    alias = engines.register(str(temp)).alias
    try:
        with state.override(alias):
            # Attachment files go into the store of the final name (not the temporary's).
            _fill(alias, package, display_name, admin, progress, final)
            with connections[alias].cursor() as cursor:
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connections[alias].close()
        engines.dispose(str(temp))
        if os.path.exists(f"{temp}-wal") and os.path.getsize(f"{temp}-wal"):
            raise BundleError("The new database could not be written completely (WAL left).")
        place_new_file(temp, final)
        snapshot_dir_for(final).mkdir(exist_ok=True)
    except FileExistsError:
        remove_file(temp)
        raise BundleError(f"A database already exists at {final}.") from None
    except BaseException as exc:
        connections[alias].close()
        remove_file(temp)
        if new_store:
            # Nothing references it: the file that would have is gone.
            shutil.rmtree(store, ignore_errors=True)
        if isinstance(exc, DatabaseError):
            raise BundleError(f"The new database could not be built: {exc}.") from exc
        raise
    remove_file(temp)
    return final


def place_new_file(temp: Path, final: Path) -> None:
    """Give the finished file at `temp` its final name; never replace an existing file.

    link() refuses an existing name atomically; file systems without hard links (some shares)
    get a rename after an existence check.
    """
    try:
        os.link(temp, final)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if os.path.lexists(final):
            raise FileExistsError(str(final)) from None
        os.rename(temp, final)


def _create_admin(alias: str, username: str, password: str) -> None:
    users = get_user_model()._default_manager.db_manager(alias)
    if isinstance(password, HashedPassword):
        user = users.model(username=username, is_staff=True, is_superuser=True)
        user.password = str(password)
        user.save(using=alias)
    else:
        users.create_superuser(username=username, email="", password=password)


def _check(alias: str) -> None:
    """Refuse a file whose references or pages are not sound (cheap on a new file)."""
    with connections[alias].cursor() as cursor:
        cursor.execute("PRAGMA foreign_key_check")
        broken = cursor.fetchall()
        if broken:
            raise BundleError(f"The new database has broken references: {broken[:5]}.")
        cursor.execute("PRAGMA quick_check")
        result = [r[0] for r in cursor.fetchall()]
        if result != ["ok"]:
            raise BundleError(f"The new database failed its check: {result[:5]}.")


# -- PostgreSQL -------------------------------------------------------------------------------


def default_dbname(label: str) -> str:
    """Return the name a new database labelled `label` gets on a PostgreSQL server."""
    return f"nw_{label}"


def check_dbname(dbname: object) -> str:
    """Return `dbname` when NukeWorks may create a database of that name; raise BundleError."""
    if (
        not isinstance(dbname, str)
        or not DBNAME_PATTERN.match(dbname)
        or PG_TEMP_MARK in dbname
        or dbname.lower() in ("postgres", "template0", "template1")
    ):
        raise BundleError(
            f"Invalid PostgreSQL database name {str(dbname)[:70]!r}: letters, digits, _ and -, "
            "starting with a letter or _, at most 63 characters (and not a system database)."
        )
    return dbname


def temp_dbname(dbname: str, label: str) -> str:
    """Return the name `dbname` is built under for the label `label` (a valid name, distinct
    from any a user may choose, and from another label's build of the same name: each
    builder drops only its own leftovers)."""
    tag = hashlib.sha256(label.encode()).hexdigest()[:8]
    return f"{dbname[:44]}{PG_TEMP_MARK}_{tag}"


def postgres_label_problem(label: str) -> str | None:
    """Return why `label` cannot name a new PostgreSQL database of the catalog, or None."""
    if catalog.get(label) is not None:
        return f"A database labelled {label!r} is registered in the catalog already."
    if database_path(label).exists():
        return f"A database with the label {label!r} already exists."
    if label in settings.DATABASES:
        return f"The label {label!r} is a connection alias of the project's settings."
    return None


def _pg_error(exc: Exception) -> BundleError:
    return BundleError(f"The PostgreSQL server refused: {postgres.describe_error(exc)}")


def drop_leftover(url: PostgresURL, label: str) -> None:
    """Drop the database an interrupted build of `label` at `url` left under its temporary
    name."""
    try:
        postgres.drop_database(url, temp_dbname(url.dbname, label))
    except psycopg.Error as exc:
        raise _pg_error(exc) from None


def build_new_postgres_database(
    label: str,
    url: PostgresURL,
    *,
    package: Package | None,
    display_name: str,
    admin: tuple[str, str] | None,
    progress: Progress | None = None,
    request: HttpRequest | None = None,
) -> str:
    """Create the database `url.dbname` on the server of `url` from `package` (None: empty),
    register it in the catalog as `label`; return its target `postgresql:<label>`.

    `url` names the server and the credentials (those of an existing catalog entry, or a
    URL an operator typed on the command line) and the new database's name, which must not
    exist on the server. Raise BundleError when anything fails; nothing is left on the server
    then (the half-made database is dropped), nor in the catalog.
    """
    folder = database_path(label).parent
    check_dbname(url.dbname)
    problem = postgres_label_problem(label)
    if problem:
        raise BundleError(problem)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with flocked(folder / LOCK_NAME, exclusive=True, timeout=0):
            return _build_postgres(label, url, package, display_name, admin, progress, request)
    except LockTimeout:
        raise BundleError(f"The database {label!r} is being built by someone else.") from None


def _build_postgres(
    label: str,
    url: PostgresURL,
    package: Package | None,
    display_name: str,
    admin: tuple[str, str] | None,
    progress: Progress | None,
    request: HttpRequest | None,
) -> str:
    target = catalog.target_for(label)
    final, temp = url.dbname, temp_dbname(url.dbname, label)
    try:
        if postgres.database_exists(url, final):
            raise BundleError(
                f"The server {url.host}:{url.port} has a database named {final!r} already: "
                "nothing was changed. Choose another label or database name."
            )
        # A stale one of an interrupted build: nobody else builds this label (we hold the lock).
        postgres.drop_database(url, temp)
        postgres.create_database(url, temp)
    except psycopg.Error as exc:
        raise _pg_error(exc) from None
    store = payload_dir_for(target)
    new_store = not os.path.lexists(store)
    alias = PG_BUILD_ALIAS.format(label=label)
    building = catalog.CatalogEntry(label, url.with_dbname(temp))
    publish_alias(alias, catalog.django_settings(building, connections.databases[DEFAULT_DB_ALIAS]))
    try:
        try:
            with state.override(alias):
                _fill(alias, package, display_name, admin, progress, target)
            connections[alias].close()
            postgres.rename_database(url, temp, final)
        except BaseException as exc:
            connections[alias].close()
            _drop_quietly(url, temp)
            if new_store:
                shutil.rmtree(store, ignore_errors=True)
            if isinstance(exc, DatabaseError | psycopg.Error):
                raise BundleError(f"The new database could not be built: {exc}.") from exc
            raise
    finally:
        # The thread's connection object keeps its settings: never reuse it for another URL.
        with contextlib.suppress(AttributeError):
            del connections[alias]
    try:
        registry.add(label, url.url(), display_name, verify=True, request=request)
    except catalog.BadURL as exc:
        _drop_quietly(url, final)
        if new_store:
            shutil.rmtree(store, ignore_errors=True)
        raise BundleError(f"The new database could not be registered: {exc}") from None
    snapshot_dir_for(target).mkdir(parents=True, exist_ok=True)
    return target


def _fill(
    alias: str,
    package: Package | None,
    display_name: str,
    admin: tuple[str, str] | None,
    progress: Progress | None,
    database: str | Path,
) -> None:
    """Migrate, stamp, seed and check the database behind `alias` (a new, empty one), then
    mark it ready. Attachment files go into the payload store of `database` (the final file,
    or the catalog target)."""
    call_command("migrate", database=alias, interactive=False, verbosity=0)
    SystemSetting.set_value(SEED_STATUS, BUILDING, using=alias)
    SystemSetting.set_value(SEED_NAME, package.name if package else "", using=alias)
    SystemSetting.set_value(SEED_VERSION, str(package.version) if package else "", using=alias)
    SystemSetting.set_value(SystemSetting.DISPLAY_NAME, display_name, using=alias)
    if admin is not None:
        _create_admin(alias, *admin)
    if package is not None:
        apply(package, alias, progress=progress, database=database)
    elif progress:
        progress(0, 0)
    # PostgreSQL checks every reference itself (Django's constraints), at each commit.
    if connections[alias].vendor == "sqlite":
        _check(alias)
    SystemSetting.set_value(SEED_STATUS, READY, using=alias)


def _drop_quietly(url: PostgresURL, dbname: str) -> None:
    # The server went away: a temporary name is dropped by the next attempt anyway.
    with contextlib.suppress(psycopg.Error):
        postgres.drop_database(url, dbname)
