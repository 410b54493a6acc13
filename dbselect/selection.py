"""The selection flow: validate a chosen path and switch the session to it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from django.db import DatabaseError, transaction
from django.http import HttpRequest

from audit import log as audit_log
from dbselect import catalog, engines, permissions, selector_cache, session
from dbselect.catalog import postgres
from dbselect.engines import gate
from dbselect.files.paths import (
    PathRejected,
    bounded,
    check_allowed,
    normalize_user_path,
    real_path,
)
from dbselect.files.validation import (
    DatabaseInfo,
    ValidationFailed,
    inspect_database,
    refusal_reason,
)
from dbselect.layout import is_archived_path, is_snapshot_path
from dbselect.models import SystemSetting

logger = logging.getLogger("nukeworks.dbselect")

MAX_DISPLAY_NAME = 200


@dataclass
class SelectionResult:
    """What happened to a selection: success, or the reason it was refused."""

    ok: bool
    path: str | None = None
    reason: str | None = None
    info: DatabaseInfo | None = None
    warnings: list[str] = field(default_factory=list)


def check_path(raw: object) -> tuple[str, DatabaseInfo]:
    """Normalise, authorise and validate a user-typed path; raise ValidationFailed if unusable.

    A PostgreSQL database is chosen by its catalog target (`postgresql:<label>`, what the
    selector lists); a typed URL is refused without connecting anywhere.
    """
    if catalog.looks_like_url(raw):
        raise ValidationFailed(URL_REFUSED)
    if catalog.is_target(raw):
        return check_registered(str(raw))
    try:
        typed = normalize_user_path(raw)
        check_allowed(typed)
        # One file, one name: links, /proc/self/root/… and // spellings all end here.
        path = bounded(lambda: real_path(typed))
    except PathRejected as exc:
        raise ValidationFailed(str(exc)) from None
    if is_snapshot_path(path):
        raise ValidationFailed(SNAPSHOT_REFUSED)
    if is_archived_path(path):
        raise ValidationFailed(ARCHIVED_REFUSED)
    return path, inspect_database(path)


def check_registered(target: str) -> tuple[str, DatabaseInfo]:
    """Validate the PostgreSQL database of a catalog target, read-only."""
    entry = catalog.entry_for_target(target)
    if entry is None:
        label = catalog.label_of(target) or ""
        raise ValidationFailed(
            f"No PostgreSQL database is registered as “{label[:40]}” (any more): operators "
            "register them (manage.py catalog add), and the selector lists them."
        )
    return target, postgres.inspect(target, entry.url)


def inspect_target(target: str) -> DatabaseInfo:
    """Validate a session's database read-only, whatever it is: a file (already normalised)
    or a PostgreSQL catalog target. Raise ValidationFailed when it cannot be read."""
    if catalog.is_target(target):
        return check_registered(target)[1]
    return inspect_database(target)


def database_size(target: str) -> tuple[int, int]:
    """Return (size in bytes, bytes not yet checkpointed): a file and its -wal, or a
    PostgreSQL database's pg_database_size (and 0). (0, 0) when it cannot be read."""
    if catalog.is_target(target):
        entry = catalog.entry_for_target(target)
        try:
            return (postgres.database_size(entry.url) if entry is not None else 0), 0
        except Exception:  # a size must never take a page down
            return 0, 0
    sizes = []
    for suffix in ("", "-wal"):
        try:
            sizes.append(os.stat(target + suffix).st_size)
        except OSError:
            sizes.append(0)
    return sizes[0], sizes[1]


URL_REFUSED = (
    "PostgreSQL databases are not opened from a typed URL: the server only connects to "
    "databases an operator registered (manage.py catalog add), and you pick those by name "
    "from the list above."
)

ARCHIVED_REFUSED = (
    "This database is archived (it lies in the archive folder, databases/.archive/). Archived "
    "databases are never opened for work; an operator brings one back with "
    "`manage.py archivedb --restore`."
)

SNAPSHOT_REFUSED = (
    "This file is a snapshot of a database. Snapshots are never opened for work, because any "
    "change would make them unrestorable; restore it from the Snapshots page of its database, "
    "or copy it elsewhere to open the copy."
)


def select(request: HttpRequest, raw_path: object, display_name: str = "") -> SelectionResult:
    """Switch the session to the database at `raw_path` if it is usable as it stands."""
    try:
        path, info = check_path(raw_path)
    except ValidationFailed as exc:
        _audit_refusal(request, raw_path, exc.reason)
        return SelectionResult(False, reason=exc.reason)
    reason = refusal_reason(info)
    if reason:
        _audit_refusal(request, path, reason)
        return SelectionResult(False, path=path, reason=reason, info=info)
    return _switch(request, path, display_name, info)


def _switch(
    request: HttpRequest, path: str, display_name: str, info: DatabaseInfo
) -> SelectionResult:
    # `info` is the validation select() just made: the file is read once per selection.
    try:
        engine, info = engines.validate_and_register(path, info)
    except engines.DatabaseUnavailable as exc:
        _audit_refusal(request, path, exc.reason)
        return SelectionResult(False, path=path, reason=exc.reason)
    except gate.GateClosed:
        reason = (
            "An administrator is restoring or migrating this database right now; "
            "try again in a moment."
        )
        return SelectionResult(False, path=path, reason=reason)
    warnings = list(info.warnings)
    name = display_name.strip()[:MAX_DISPLAY_NAME]
    if name and name != info.display_name:
        warning = _set_display_name(request, engine, name)
        if warning:
            warnings.append(warning)
    session.switch(request, engine, reason="selected")
    selector_cache.remember_selection(path)
    audit_log.record(
        "database.select",
        target=path,
        request=request,
        using=engine.alias,
        detail=f"display name: {session.selected_name(request)}",
    )
    logger.info("session selected database path=%r alias=%s", path, engine.alias)
    return SelectionResult(True, path=path, info=info, warnings=warnings)


def may_rename(request: HttpRequest, path: str) -> bool:
    """Return True when this session may change the display name of the database at `path`.

    Only an administrator of that very database may: the user signed in to it, which is
    `request.user` only while the session works on it (users live in each file; an admin of
    another file, or a same-named user there, is nobody here).
    """
    return session.selected_path(request) == path and permissions.is_admin(
        getattr(request, "user", None)
    )


def renaming_refused(current: str) -> str:
    """Return the message shown when someone who is not an admin tries to rename a database."""
    return f"This database is already named “{current}”; only its administrators can rename it."


def _set_display_name(request: HttpRequest, engine: engines.Engine, name: str) -> str | None:
    """Write `name` into the database's system_settings if this session may; return a warning.

    Anyone may name a database that has no name yet (the specification lets the user supply a
    missing name). Changing an existing name needs an administrator of that database: a
    visitor typing a name at /select-db once renamed any file, so the selector listed two
    "Default"s. The check and the write are one write transaction, so two visitors naming a
    fresh database at once cannot overwrite each other either.
    """
    admin = may_rename(request, engine.path)
    try:
        with transaction.atomic(using=engine.alias):
            stored = (
                SystemSetting.get_value(SystemSetting.DISPLAY_NAME, using=engine.alias) or ""
            ).strip()
            if stored == name:
                return None
            if stored and not admin:
                refused = stored
            else:
                refused = ""
                SystemSetting.set_value(SystemSetting.DISPLAY_NAME, name, using=engine.alias)
    except DatabaseError as exc:
        return f"The display name could not be saved in the database: {exc}"
    if refused:
        audit_log.record(
            "database.rename",
            target=engine.path,
            outcome="denied",
            detail=f"kept “{refused}”, refused “{name}”: not an administrator of this database",
            request=request,
            using=engine.alias,
        )
        engine.display_name = refused
        return renaming_refused(refused)
    audit_log.record(
        "database.rename",
        target=engine.path,
        detail=f"“{stored}” → “{name}”" if stored else f"named “{name}”",
        request=request,
        using=engine.alias,
    )
    engine.display_name = name
    return None


def _audit_refusal(request: HttpRequest, target: object, reason: str) -> None:
    current = session.selected_path(request)
    engine = engines.get(current) if current else None
    if engine is None:
        logger.info("selection refused target=%r reason=%r", target, reason)
        return
    audit_log.record(
        "database.select",
        target=str(target)[:1000],
        outcome="failure",
        detail=reason,
        request=request,
        using=engine.alias,
    )
