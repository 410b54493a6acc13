"""Creating a database: queue it, build it (the worker's job), rebuild it, discard it.

The selector's "New database…" page, `manage.py createdb` and the API call `request_build`,
which claims the label (the marker, created exclusively), records what to build beside it and
queues a job (`provisioning.tasks.build_database`) or, for a command with no worker running,
lets the caller run it. The job (`run`) holds the label's builder lock, builds the file with
`bundles.newdb.build_new_database` (a temporary name, migrated, the seed package applied,
seed_status "building" then "ready", renamed into place) and reports progress in the marker;
on success it removes the marker, on failure the marker says "failed" with the reason and no
file is left at the database's path. `retry` queues a new job for the same label (the old one,
if still queued, then finds another job id in the marker and does nothing); `discard` moves
the label's folder aside to databases/.discarded/<label>-<UTC time>/, never deleting it.

A database may instead be created on a PostgreSQL server (`postgres_like`: the server and
credentials of an existing catalog entry, with a new database name; or `postgres_url`, given
on the command line only): the job runs `bundles.newdb.build_new_postgres_database` (CREATE
DATABASE, migrated and seeded through the same code, stamped ready, and only then registered
in the catalog under the label), with the same marker, progress, retry and discard. The
request file never holds a password: a build on a server given by URL is run by the command
that was given it (never queued), and only that command rebuilds it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connections
from django.http import HttpRequest

from audit import log as audit_log
from bundles import newdb
from bundles import package as packages
from dbselect import catalog, engines
from dbselect.catalog import postgres
from dbselect.catalog.dsn import PostgresURL
from dbselect.layout import preparing
from provisioning import progress
from provisioning.progress import Status

logger = logging.getLogger("nukeworks.provisioning")

# A folder name that also fits in snapshot file names (dbselect.layout.MAX_LABEL).
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
DISCARDED_FOLDER = ".discarded"
MAX_DISPLAY_NAME = 200
# Test-only: seconds to sleep after each progress step of a build, so that a test can kill
# the worker half-way (tests/test_provisioning_worker.py). Unset or 0 in real use.
STEP_DELAY_ENV = "NUKEWORKS_PROVISIONING_STEP_DELAY"
# Seconds between two writes of the marker while a build reports progress.
MARKER_INTERVAL = 0.1

ProgressCallback = Callable[[int, int], None]


class ProvisioningError(Exception):
    """A request cannot be done; `message` says why, `code` and `status` for the API."""

    def __init__(self, message: str, code: str = "invalid", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Job:
    """A build request that was accepted."""

    label: str
    job: str
    queued: bool


# -- checks ------------------------------------------------------------------------------------


def check_label(label: object) -> str:
    """Return `label` when it is a valid new folder name; raise ProvisioningError otherwise."""
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise ProvisioningError(
            "A label is 1 to 40 letters, digits, '-' or '_', starting with a letter or digit "
            f"(it names the folder databases/<label>/); {str(label)[:60]!r} is not one.",
            code="invalid_label",
        )
    return label


def _refuse_taken(label: str) -> None:
    folder = progress.folder_for(label)
    if progress.database_path(label).exists() or progress.catalog_entry(label) is not None:
        raise ProvisioningError(
            f"A database labelled {label!r} exists already; nothing was changed.",
            code="label_taken",
            status=409,
        )
    marker = preparing(folder)
    if marker is not None:
        raise ProvisioningError(
            f"The database {label!r} is being prepared already ({marker['state']}); follow its "
            "progress, or rebuild or discard it.",
            code="label_taken",
            status=409,
        )
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ProvisioningError(
            f"The folder databases/{label}/ exists already and is not empty; nothing is "
            "overwritten.",
            code="label_taken",
            status=409,
        )


def parse_seed(text: object) -> tuple[str, str | None]:
    """Split "name@version" (or "name": the highest version) into its parts."""
    if not isinstance(text, str) or not text.strip():
        raise ProvisioningError("Name a seed package as name@version, e.g. starter@1.", "bad_seed")
    name, _, version = text.strip().partition("@")
    return name, (version or None)


def find_package(seed: str) -> packages.Package:
    """Return the seed package `seed` ("name@version"); raise ProvisioningError when unknown."""
    name, version = parse_seed(seed)
    try:
        return packages.find(name, version)
    except packages.BundleError as exc:
        raise ProvisioningError(
            f"Unknown or unusable seed package {seed!r}: {exc.message}", code="unknown_seed"
        ) from None


def seed_choices() -> list[packages.Package]:
    """Return the seed packages one can create a database from."""
    return packages.available()


def check_admin_username(username: str) -> str:
    """Return a valid username for the first admin; raise ProvisioningError otherwise."""
    field = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD)
    try:
        return field.clean(username, None)
    except ValidationError as exc:
        raise ProvisioningError(
            f"Invalid admin username: {' '.join(exc.messages)}", code="invalid_admin"
        ) from None


# -- PostgreSQL destinations -------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server (and user) known from a catalog entry: where new databases go."""

    label: str  # the catalog entry whose server and credentials are reused
    url: PostgresURL

    def describe(self) -> str:
        return (
            f"PostgreSQL on {self.url.host}:{self.url.port} as {self.url.user} "
            f"(the server of “{self.label}”)"
        )


def postgres_servers() -> list[Server]:
    """Return each PostgreSQL server (host, port, user, options) of the catalog once."""
    try:
        entries = catalog.entries()
    except Exception:  # the catalog's Redis is down: no server to offer
        return []
    seen: dict[tuple, Server] = {}
    for entry in entries:
        u = entry.url
        seen.setdefault((u.host, u.port, u.user, u.options), Server(entry.label, u))
    return list(seen.values())


def _without_password(url: PostgresURL) -> str:
    """Return the URL as the request file records it: without its password."""
    return dataclasses.replace(url, password="").url()


def _postgres_destination(
    label: str, like: str | None, dbname: str | None, url: PostgresURL | None
) -> tuple[PostgresURL, dict[str, str]] | None:
    """Return (where to create it, what the request file records), None for a file."""
    if like and url is not None:
        raise ProvisioningError("Give a catalog entry's server or a URL, not both.", "bad_server")
    if url is not None:
        where = url
        record = {"url": _without_password(url), "dbname": url.dbname}
    elif like:
        where = _on_server_of(
            like,
            label,
            dbname,
            f"No PostgreSQL database is registered as {like!r}: choose a server of the catalog.",
        )
        record = {"like": like, "dbname": where.dbname}
    else:
        if dbname:
            raise ProvisioningError("A database name goes with a PostgreSQL server.", "bad_server")
        return None
    try:
        newdb.check_dbname(where.dbname)
    except packages.BundleError as exc:
        raise ProvisioningError(exc.message, code="invalid_dbname") from None
    return where, record


def _on_server_of(like: str, label: str, dbname: str | None, missing: str) -> PostgresURL:
    """Return the database `dbname` (default: the label's) on the server of the catalog
    entry `like`; refuse with `missing` when no entry has that label."""
    entry = progress.catalog_entry(like)
    if entry is None:
        raise ProvisioningError(missing, code="unknown_server")
    return entry.url.with_dbname(dbname or newdb.default_dbname(label))


def _check_server(label: str, where: PostgresURL) -> None:
    """Refuse, before anything is queued, a label or a database name that is taken."""
    problem = newdb.postgres_label_problem(label)
    if problem:
        raise ProvisioningError(problem, code="label_taken", status=409)
    try:
        exists = postgres.database_exists(where, where.dbname)
    except psycopg.Error as exc:
        raise ProvisioningError(
            postgres.describe_error(exc), code="postgres_unavailable", status=503
        ) from None
    if exists:
        raise ProvisioningError(
            f"The server {where.host}:{where.port} has a database named {where.dbname!r} "
            "already; nothing was changed.",
            code="dbname_taken",
            status=409,
        )


def _postgres_url(label: str, asked: dict[str, Any], given: PostgresURL | None) -> PostgresURL:
    """Return where the request of `label` builds its database (see _postgres_destination)."""
    wanted = asked.get("postgres") or {}
    if wanted.get("like"):
        return _on_server_of(
            str(wanted["like"]),
            label,
            str(wanted.get("dbname") or ""),
            f"The catalog entry {wanted['like']!r}, whose server was chosen, is no longer "
            "registered: discard this database and create it again.",
        )
    if given is None or _without_password(given) != wanted.get("url"):
        raise ProvisioningError(
            f"{label!r} is built on a PostgreSQL server given by its URL on the command line, "
            "whose password is never stored: rebuild it with `manage.py createdb "
            f"{label} --retry --postgres-url <the same URL>`, or discard it.",
            code="not_rebuildable",
            status=409,
        )
    return given


# -- queueing ----------------------------------------------------------------------------------


def request_build(
    label: str,
    *,
    seed: str | None,
    display_name: str = "",
    admin_username: str | None = None,
    admin_password_hash: str | None = None,
    requested_by: str = "",
    via: str = "",
    enqueue: bool = True,
    request: HttpRequest | None = None,
    postgres_like: str | None = None,
    postgres_dbname: str | None = None,
    postgres_url: PostgresURL | None = None,
) -> Job:
    """Claim `label`, record what to build and queue its job (or leave it to the caller).

    `seed` is "name@version" or None for an empty database; the first admin's password is
    given as a hash (make_password, or the hash of a login being copied): the queue and the
    files beside the database never hold a password. `postgres_like` (a catalog label) or
    `postgres_url` puts the database on a PostgreSQL server (see the module); a URL's build
    is never queued (`enqueue` must be False: the caller runs it, passing the URL again).
    Raise ProvisioningError (400 invalid, 409 label or database name taken, 503 queue or
    server unavailable).
    """
    check_label(label)
    package = find_package(seed) if seed else None
    destination = _postgres_destination(label, postgres_like, postgres_dbname, postgres_url)
    if destination is not None and postgres_url is not None and enqueue:
        raise ProvisioningError(
            "A database on a server given by URL is built by the command that was given it "
            "(its password is never queued).",
            code="bad_server",
        )
    if admin_username:
        admin_username = check_admin_username(admin_username)
        if not admin_password_hash:
            raise ProvisioningError("The first admin needs a password.", code="invalid_admin")
    name = (display_name or "").strip()[:MAX_DISPLAY_NAME] or label.title()
    _refuse_taken(label)
    if destination is not None:
        _check_server(label, destination[0])
    folder = progress.folder_for(label)
    folder.mkdir(parents=True, exist_ok=True)
    if not progress.claim(folder):
        _refuse_taken(label)  # somebody else claimed it a moment ago
    job = uuid.uuid4().hex
    progress.write_request(
        folder,
        {
            "label": label,
            "seed": package.ref if package else None,
            "display_name": name,
            "admin_username": admin_username or None,
            "admin_password_hash": admin_password_hash if admin_username else None,
            "requested_by": requested_by,
            "via": via,
            "requested_at": time.time(),
            **({"postgres": destination[1]} if destination is not None else {}),
        },
    )
    seeded = f"seed {package.ref}" if package else "empty"
    if destination is not None:
        seeded += f", on PostgreSQL {destination[0].server()}"
    progress.write(
        folder, state=progress.QUEUED, job=job, message="Waiting for a worker…", display_name=name
    )
    _queue(folder, label, job, name, enqueue)
    audit_log.record(
        "database.create",
        target=progress.target_for(label),
        outcome="queued",
        detail=f"label {label}, {seeded}, display name “{name}”, job {job}, via {via}",
        request=request,
        username=requested_by or None,
    )
    return Job(label, job, queued=enqueue)


def _queue(folder: Path, label: str, job: str, name: str, enqueue: bool) -> None:
    if not enqueue:
        return
    from provisioning import tasks

    try:
        tasks.enqueue(label, job)
    except Exception as exc:  # the queue's storage (SQLite file, Redis) refused the job
        progress.write(
            folder,
            state=progress.FAILED,
            job=job,
            message=f"The job could not be queued: {exc}",
            display_name=name,
        )
        raise ProvisioningError(
            f"The job could not be queued ({exc}); rebuild it once the queue works again.",
            code="queue_unavailable",
            status=503,
        ) from exc


def retry(
    label: str,
    *,
    requested_by: str = "",
    via: str = "",
    enqueue: bool = True,
    request: HttpRequest | None = None,
    postgres_url: PostgresURL | None = None,
) -> Job:
    """Queue the build of `label` again, as it was first requested (idempotent by label).

    Allowed while the database is queued, failed, interrupted, or in place but not ready (that
    file is moved aside first, never deleted); refused while it is being built or ready. A
    database on a server given by URL needs that URL again (`postgres_url`, never queued).
    """
    check_label(label)
    folder = progress.folder_for(label)
    current = progress.status(label)
    _refuse_rebuild(current)
    try:
        with progress.builder_lock(folder):
            current = progress.status(label, holding_lock=True)
            _refuse_rebuild(current)
            asked = progress.read_request(folder)
            if asked is None:
                raise ProvisioningError(
                    f"Nothing records how {label!r} was requested, so it cannot be rebuilt as "
                    "it was: discard it and create it again.",
                    code="not_rebuildable",
                    status=409,
                )
            if asked.get("postgres"):
                url = _postgres_url(label, asked, postgres_url)
                if not asked["postgres"].get("like") and enqueue:
                    raise ProvisioningError(
                        "A database on a server given by URL is rebuilt by the command that "
                        "is given it again (its password is never queued).",
                        code="bad_server",
                    )
                if current.state == progress.NOT_READY:
                    raise _registered(label)
                _check_server(label, url)
            if current.state == progress.NOT_READY:
                _move_aside(label, only_database=True)
            job = uuid.uuid4().hex
            name = str(asked.get("display_name") or label)
            progress.write(
                folder,
                state=progress.QUEUED,
                job=job,
                message="Waiting for a worker…",
                display_name=name,
            )
            _queue(folder, label, job, name, enqueue)
    except progress.BuilderBusy:
        raise _being_built(label) from None
    audit_log.record(
        "database.create",
        target=progress.target_for(label),
        outcome="queued",
        detail=f"rebuild of {label} (was {current.state}), job {job}, via {via}",
        request=request,
        username=requested_by or None,
    )
    return Job(label, job, queued=enqueue)


def _registered(label: str) -> ProvisioningError:
    return ProvisioningError(
        f"{label!r} is a PostgreSQL database of the catalog that is not ready: NukeWorks "
        "neither rebuilds nor discards a database it did not build; an operator removes it "
        f"from the catalog (manage.py catalog remove {label}).",
        code="not_rebuildable",
        status=409,
    )


def _being_built(label: str) -> ProvisioningError:
    return ProvisioningError(
        f"The database {label!r} is being built right now; wait for it to finish or fail.",
        code="in_progress",
        status=409,
    )


def _refuse_rebuild(current: Status) -> None:
    if current.state == progress.MISSING:
        raise ProvisioningError(current.message, code="unknown_database", status=404)
    if current.state == progress.READY:
        raise ProvisioningError(
            f"The database {current.label!r} is ready; there is nothing to rebuild.",
            code="ready",
            status=409,
        )
    if current.state == progress.BUILDING:
        raise _being_built(current.label)
    if current.state == progress.UNUSABLE:
        raise ProvisioningError(
            f"The file of {current.label!r} cannot be read ({current.message}); discard it "
            "and create it again.",
            code="not_rebuildable",
            status=409,
        )


def discard(
    label: str, *, requested_by: str = "", via: str = "", request: HttpRequest | None = None
) -> Path:
    """Move the folder of a database that never became ready aside; return where it went.

    Never deletes anything: the folder goes to databases/.discarded/<label>-<UTC time>/.
    Refused for a ready or unreadable database (it may be in use) and while a builder is at work.
    """
    check_label(label)
    folder = progress.folder_for(label)
    current = progress.status(label)
    _refuse_discard(current)
    dropped = ""
    try:
        with progress.builder_lock(folder):
            current = progress.status(label, holding_lock=True)
            _refuse_discard(current)
            if current.state == progress.NOT_READY and progress.catalog_entry(label):
                raise _registered(label)
            dropped = _drop_leftover(label, progress.read_request(folder) or {})
            target = _move_aside(label, only_database=False)
    except progress.BuilderBusy:
        raise _being_built(label) from None
    except FileNotFoundError:
        raise ProvisioningError(
            f"No database is labelled {label!r}.", code="unknown_database", status=404
        ) from None
    audit_log.record(
        "database.discard",
        target=progress.target_for(label) if not dropped else catalog.target_for(label),
        detail=f"{label} ({current.state}) moved to {target}{dropped}, via {via}",
        request=request,
        username=requested_by or None,
    )
    return target


def _drop_leftover(label: str, asked: dict[str, Any]) -> str:
    """Drop what an interrupted build on a PostgreSQL server left there (its temporary
    database); return a note for the audit entry ("" for a file)."""
    wanted = asked.get("postgres")
    if not isinstance(wanted, dict):
        return ""
    dbname = str(wanted.get("dbname") or "")
    leftover = newdb.temp_dbname(dbname, label) if dbname else ""
    entry = progress.catalog_entry(str(wanted.get("like") or "")) if wanted.get("like") else None
    if entry is None:
        return (
            f"; drop any database {leftover!r} left on the PostgreSQL server by hand (its "
            "credentials are not known here)"
        )
    try:
        newdb.drop_leftover(entry.url.with_dbname(dbname), label)
    except packages.BundleError as exc:
        return f"; the leftover database {leftover!r} could not be dropped: {exc}"
    return f"; no database {leftover!r} left on {entry.url.host}:{entry.url.port}"


def _refuse_discard(current: Status) -> None:
    if current.state == progress.MISSING:
        raise ProvisioningError(current.message, code="unknown_database", status=404)
    if current.state == progress.READY:
        raise ProvisioningError(
            f"The database {current.label!r} is ready and may be in use: only databases that "
            "never became ready are discarded.",
            code="ready",
            status=409,
        )
    if current.state == progress.BUILDING:
        raise _being_built(current.label)
    if current.state == progress.UNUSABLE:
        # Maybe a database in use that another program holds locked right now: never moved.
        raise ProvisioningError(
            f"The file of {current.label!r} cannot be read right now ({current.message}); "
            "only databases that never became ready are discarded.",
            code="not_discardable",
            status=409,
        )


def discarded_dir() -> Path:
    """Return databases/.discarded/ (never scanned: the scanner skips dot folders)."""
    return progress.databases_dir() / DISCARDED_FOLDER


def _move_aside(label: str, *, only_database: bool) -> Path:
    """Move databases/<label>/ (or only its database file) to databases/.discarded/…."""
    folder = progress.folder_for(label)
    path = progress.database_path(label)
    # Close every worker's connections to the file before it moves.
    engines.dispose(str(path), everywhere=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    aside = discarded_dir()
    aside.mkdir(parents=True, exist_ok=True)
    target = aside / f"{label}-{stamp}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = aside / f"{label}-{stamp}-{suffix}"
    if not only_database:
        os.rename(folder, target)
        return target
    target.mkdir()
    for extra in ("", "-wal", "-shm", "-journal"):
        moving = Path(f"{path}{extra}")
        if moving.exists():
            os.rename(moving, target / moving.name)
    return target


# -- the job -----------------------------------------------------------------------------------


class _Reporter:
    """The progress callback of a build: the marker (at most every MARKER_INTERVAL s), and
    the caller's own callback (a command's progress bar)."""

    def __init__(
        self, folder: Path, job: str, name: str, callback: ProgressCallback | None
    ) -> None:
        self.folder = folder
        self.job = job
        self.name = name
        self.callback = callback
        self.last = 0.0
        try:
            self.delay = max(0.0, float(os.environ.get(STEP_DELAY_ENV, "") or 0))
        except ValueError:
            self.delay = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self.last >= MARKER_INTERVAL:
            self.last = now
            progress.write(
                self.folder,
                state=progress.BUILDING,
                job=self.job,
                done=done,
                total=total,
                message=f"Building: step {done} of {total}…",
                display_name=self.name,
            )
        if self.callback is not None:
            self.callback(done, total)
        if self.delay:
            time.sleep(self.delay)


def run(
    label: str,
    job: str,
    *,
    on_progress: ProgressCallback | None = None,
    postgres_url: PostgresURL | None = None,
) -> Status:
    """Build the database `label` for job `job` (the worker's task); return where it stands.

    Does nothing when another builder holds the label, or when the marker names another job
    (superseded by a rebuild) or is gone (discarded). `postgres_url`: the URL a database on a
    server given by URL is built on (see request_build).
    """
    folder = progress.folder_for(label)
    try:
        with progress.builder_lock(folder):
            _build(label, job, folder, on_progress, postgres_url)
    except progress.BuilderBusy:
        logger.info("build skipped label=%s job=%s: another builder is at work", label, job)
    except FileNotFoundError:
        logger.info("build skipped label=%s job=%s: the folder is gone (discarded)", label, job)
    return progress.status(label)


def _build(
    label: str,
    job: str,
    folder: Path,
    on_progress: ProgressCallback | None,
    postgres_url: PostgresURL | None,
) -> None:
    marker = preparing(folder, check_builder=False)  # the lock is ours
    if marker is None or marker["job"] != job:
        logger.info("build skipped label=%s job=%s: superseded or discarded", label, job)
        return
    path = progress.database_path(label)
    asked = progress.read_request(folder) or {}
    if path.exists() or (asked.get("postgres") and progress.catalog_entry(label) is not None):
        # Put in place (renamed, or registered) by a builder that stopped before it removed
        # the marker.
        progress.clear(folder)
        return
    target = progress.target_for(label)
    name = str(asked.get("display_name") or label)
    progress.write(folder, state=progress.BUILDING, job=job, message="Starting…", display_name=name)
    reporter = _Reporter(folder, job, name, on_progress)
    started = time.monotonic()
    try:
        package = find_package(asked["seed"]) if asked.get("seed") else None
        if asked.get("postgres"):
            built: str | Path = newdb.build_new_postgres_database(
                label,
                _postgres_url(label, asked, postgres_url),
                package=package,
                display_name=name,
                admin=_admin(asked),
                progress=reporter,
            )
        else:
            built = newdb.build_new_database(
                label,
                package=package,
                display_name=name,
                admin=_admin(asked),
                progress=reporter,
            )
    except Exception as exc:
        reason = (
            str(exc)
            if isinstance(exc, ProvisioningError | packages.BundleError)
            else (f"{type(exc).__name__}: {exc}")
        )
        logger.exception("build failed label=%s job=%s", label, job)
        progress.write(
            folder,
            state=progress.FAILED,
            job=job,
            message=f"Building failed: {reason}",
            display_name=name,
        )
        audit_log.record(
            "database.create",
            target=target,
            outcome="failure",
            detail=f"job {job}: {reason}",
            username=str(asked.get("requested_by") or "") or None,
        )
        return
    _audit_created(built, label, job, asked, time.monotonic() - started)
    progress.clear(folder)


def _admin(asked: dict[str, Any]) -> tuple[str, str] | None:
    username, encoded = asked.get("admin_username"), asked.get("admin_password_hash")
    if not (username and encoded):
        return None
    # Stored as the hash it is: no password ever travels through the queue or the folder.
    return str(username), newdb.HashedPassword(str(encoded))


def _audit_created(
    path: str | Path, label: str, job: str, asked: dict[str, Any], took: float
) -> None:
    engine = engines.register(str(path))
    where = f", on PostgreSQL {engine.location}" if not engine.is_file else ""
    try:
        audit_log.record(
            "database.create",
            target=str(path),
            detail=(
                f"label {label}, {('seed ' + asked['seed']) if asked.get('seed') else 'empty'}"
                f"{where}, "
                f"job {job}, via {asked.get('via') or '-'}, built in {took:.1f} s"
            ),
            username=str(asked.get("requested_by") or "") or None,
            using=engine.alias,
        )
    finally:
        connections[engine.alias].close()
