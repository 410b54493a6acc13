"""Which database an API request works on: the one its URL names.

`/api/v1/databases/{db}/…`: `{db}` is a catalog label (the folder name of
databases/<label>/, or the label of a PostgreSQL database an operator registered:
dbselect.catalog) or `current` (this browser session's selected database). The view binds
the request to that database before it authenticates anybody, so a token is looked up in the
database it belongs to and nowhere else: a token of database A on B's URL finds no match in B
and gets 401.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from django.http import HttpRequest
from rest_framework import status

from api.errors import ApiError, fault_error
from dbselect import catalog, engines, recovery, selection, session, state
from dbselect.conf import get_config
from dbselect.engines import gate
from dbselect.files.schema import SchemaState
from dbselect.files.validation import (
    DatabaseInfo,
    ValidationFailed,
    refusal_reason,
)
from dbselect.layout import preparing

CURRENT = "current"
# A folder name: no separator, never "." or "..".
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class BoundDatabase:
    """The database an API request works on."""

    name: str  # the {db} of the URL: a label or "current"
    target: str
    engine: engines.Engine
    # The migrations the file still lacks (only for views that accept such a database).
    pending: tuple[tuple[str, str], ...] = ()

    @property
    def alias(self) -> str:
        return self.engine.alias

    @property
    def is_current(self) -> bool:
        return self.name == CURRENT


def target_for(request: HttpRequest, db: str) -> str:
    """Return the target `db` names; raise ApiError 404 for an unknown label."""
    if db == CURRENT:
        target = session.selected_path(request)
        if not target:
            raise ApiError(
                "no_database_selected",
                "This browser session has not selected a database; use a label instead.",
                status.HTTP_404_NOT_FOUND,
            )
        return target
    if LABEL_RE.match(db):
        # databases/<label>/<file>, as the scanner lists them: one stat(), no folder scan.
        config = get_config()
        path = os.path.join(config["DATABASES_DIR"], db, config["DATABASE_FILENAME"])
        if os.path.isfile(path):
            return os.path.normpath(os.path.abspath(path))
        marker = preparing(os.path.dirname(path))
        if marker is not None:
            raise being_prepared(db, marker)
        # A PostgreSQL database of the catalog: its engine when cached (a removal reaches it
        # through the dispose feed), else the catalog itself.
        registered = catalog.target_for(db)
        if engines.get(registered) is not None or catalog.get(db) is not None:
            return registered
    raise ApiError(
        "unknown_database",
        f"No database is labelled {db!r} in this server's catalog.",
        status.HTTP_404_NOT_FOUND,
    )


# What of a database's preparation marker (dbselect.layout) the API shows.
PROGRESS_KEYS = ("state", "done", "total", "message", "updated", "display_name")


def being_prepared(db: str, marker: dict) -> ApiError:
    """Return the answer for a database still being built: 503 with Retry-After, or 409.

    Queued or building: 503 and the progress (come back later). Failed or interrupted (its
    builder died): 409 with the reason;
    an operator rebuilds or discards it (POST …/databases/{label}/rebuild or …/discard).
    """
    progress = {key: marker[key] for key in PROGRESS_KEYS}
    if marker["state"] in ("failed", "interrupted"):
        return ApiError(
            "database_not_ready",
            f"The database {db!r} was never finished: {marker['message']}",
            status.HTTP_409_CONFLICT,
            detail={"progress": progress},
        )
    return ApiError(
        "database_preparing",
        f"The database {db!r} is being prepared ({marker['state']}); retry after Retry-After.",
        status.HTTP_503_SERVICE_UNAVAILABLE,
        detail={"progress": progress},
        retry_after=True,
    )


def migration_plan(info: DatabaseInfo) -> list[dict[str, str]]:
    """Return the pending migrations of a database as [{"app", "name"}]."""
    return [{"app": app, "name": name} for app, name in info.pending]


def needs_migration(db: str, info: DatabaseInfo) -> ApiError:
    """Return the 409 answer for a database that must be migrated before use."""
    return ApiError(
        "needs_migration",
        f"The database {db!r} needs {len(info.pending)} migration(s) before it can be used.",
        status.HTTP_409_CONFLICT,
        detail={"plan": migration_plan(info)},
    )


def bind(request: HttpRequest, db: str, *, up_to_date: bool = True) -> BoundDatabase:
    """Open the database `db` names and make it the request's database.

    With `up_to_date` (every endpoint but the migration plan), a database that needs
    migration answers 409 with the plan, and any unusable file 409 with the reason; a
    database under maintenance answers 503. The request holds the file's maintenance gate
    until it ends (released by dbselect's middleware).
    """
    target = target_for(request, db)
    pending: tuple[tuple[str, str], ...] = ()
    try:
        cached = engines.get(target)
        # An engine registered but never validated (at start-up, or by a migration request
        # on a database that needs migration) is inspected here too: engines.open would
        # refuse such a database outright, and its migration endpoint could never be reached.
        if cached is None or not _validated(cached):
            try:
                info = _inspect(target)
            except ValidationFailed as exc:
                raise engines.DatabaseUnavailable(exc.reason) from None
            if info.state is SchemaState.NEEDS_MIGRATION and up_to_date:
                raise needs_migration(db, info)
            if info.state is SchemaState.NEEDS_MIGRATION:
                engine = engines.register(target, display_name=info.display_name)
                gate.enter(engine.path)
                pending = tuple(info.pending)
            else:
                reason = refusal_reason(info)
                if reason:
                    raise engines.DatabaseUnavailable(reason)
                engine, _ = engines.validate_and_register(target, info)
        else:
            engine = engines.open(target)
    except engines.DatabaseUnavailable as exc:
        if recovery.being_swapped(target, exc.reason):
            # Closed for a moment by a restore or migration on any server: retry, not gone.
            raise fault_error(gate.GateClosed(exc.reason)) from None  # type: ignore[misc]
        raise ApiError("database_unavailable", exc.reason, status.HTTP_409_CONFLICT) from None
    except gate.GateClosed as exc:
        raise fault_error(exc) from None  # type: ignore[misc]
    state.activate(engine.alias)
    return BoundDatabase(name=db, target=target, engine=engine, pending=pending)


def _validated(engine: engines.Engine) -> bool:
    """Return True when the engine was validated since it was registered."""
    return engine.identity is not None if engine.is_file else engine.validated


def _inspect(target: str) -> DatabaseInfo:
    """Validate a file or a PostgreSQL database of the catalog, read-only."""
    return selection.inspect_target(target)


# Apps whose tables a sign-in reads or writes (users, their groups, tokens).
SIGN_IN_APPS = frozenset({"accounts", "auth", "contenttypes", "knox"})


def refuse_sign_in_before_migration(database: BoundDatabase) -> None:
    """Raise 409 with the plan when a pending migration touches the sign-in's own tables.

    A database that needs migration still issues tokens when only other apps' migrations
    are pending, so its administrators can apply them through the API.
    """
    blocking = [m for m in database.pending if m[0] in SIGN_IN_APPS]
    if blocking:
        raise ApiError(
            "needs_migration",
            f"The database {database.name!r} must be migrated before anyone can sign in to it "
            "through the API (its accounts or tokens tables are not up to date); use the "
            "selector or manage.py migrate_all.",
            status.HTTP_409_CONFLICT,
            detail={"plan": [{"app": a, "name": n} for a, n in database.pending]},
        )


def unbind() -> None:
    """Forget the request's database (the view's work is done)."""
    state.deactivate()
