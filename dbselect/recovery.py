"""Recovery: what a request gets when its database cannot serve it.

Two cases, one module:

* the selected file is unusable (deleted, truncated, corrupt, replaced, refused by
  `engines.open`): the session **falls back** to its previous database with the banner, or back
  to the selector. Never silent: the banner, an audit entry in the database the session returns
  to, and a request that was aimed at the broken database (possibly a write) is answered with a
  redirect instead of being run on another one;
* a SQLite error met while binding or in the view (**faults**): locked longer than the busy
  timeout, read-only, disk full, too slow, under maintenance: a 503 page that says so and that
  the change was not saved; an unusable file falls back as above. A PostgreSQL database closed
  for a moment by a restore or migration (on any app server) is under maintenance too, never
  a reason to fall back.

Errors that are bugs rather than faults (IntegrityError, a programming error) are left to
Django's normal handling.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import sqlite3
from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.db import DatabaseError, DataError, IntegrityError, NotSupportedError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import escape_leading_slashes

from audit import log as audit_log
from dbselect import catalog, engines, session
from dbselect.catalog import postgres
from dbselect.conf import get_config
from dbselect.engines import gate

logger = logging.getLogger("nukeworks.dbselect")

FALLBACK_MESSAGE = (
    "Your selected database could not be opened. Reverted to {name}. Reason: {reason}"
)
# A refused choice (the selector, a migration that failed): nothing was switched.
KEPT_MESSAGE = (
    "The database you chose could not be opened; you are still working on {name}. Reason: {reason}"
)


def fallback_banner(name: str, reason: str, *, switched: bool = False) -> str:
    """Return the banner of a database that could not be opened, the session being on `name`.

    switched: the session was just put back on `name`, its previous database ("Reverted to");
    otherwise it never left `name` (a refused choice) and is told it still works there.
    """
    template = FALLBACK_MESSAGE if switched else KEPT_MESSAGE
    return template.format(name=name, reason=reason)


def to_selector(request: HttpRequest) -> HttpResponseRedirect:
    """Return a redirect to the selector that comes back to this page after a GET."""
    url = reverse("dbselect:select")
    if request.method == "GET" and request.path_info != "/":
        url += "?" + urlencode({"next": request.get_full_path()})
    return HttpResponseRedirect(url)


def fall_back(
    request: HttpRequest, path: str, reason: str, *, exempt: bool
) -> str | HttpResponseRedirect | None:
    """Move the session off the unusable database at `path`.

    Return the alias to continue with (exempt pages only), a redirect, or None (an exempt
    page with no database left).
    """
    if being_swapped(path, reason):
        # A PostgreSQL database closed for a few milliseconds while a restore or migration
        # swaps it (snapshots.pg): it is still this session's database. Never fall back
        # (the request, possibly a write, would land on another database): refuse it.
        logger.warning("database being swapped path=%r reason=%r", path, reason)
        if exempt:
            return None
        return busy_page(request, Fault(FaultKind.MAINTENANCE, PG_MAINTENANCE))
    logger.warning("database unavailable path=%r reason=%r", path, reason)
    previous = request.session.get(session.PREVIOUS_PATH)
    failed_name = session.selected_name(request) or path
    if previous and previous != path:
        try:
            engine = engines.open(previous)
            session.switch(request, engine, reason="fallback")
        except (engines.DatabaseUnavailable, gate.GateClosed) as exc:
            logger.warning("previous database unavailable path=%r reason=%r", previous, exc)
        except DatabaseError as exc:
            # Re-binding the login reads the previous database: it may be broken too.
            logger.warning("previous database failed path=%r error=%r", previous, exc)
        else:
            audit_log.record(
                "database.fallback",
                target=path,
                outcome="failure",
                detail=f"{reason} Reverted to {previous}.",
                request=request,
                # The login is not loaded yet when the middleware falls back: name the one this
                # session had on the database it left.
                username=(session.login_for(request, path) or {}).get("username") or None,
                using=engine.alias,
            )
            messages.warning(
                request,
                fallback_banner(session.selected_name(request) or previous, reason, switched=True),
            )
            # Never run this request (possibly a write) on a database it did not target.
            if exempt:
                return engine.alias
            # escape_leading_slashes: a path such as //evil.example/ must not leave the site.
            return HttpResponseRedirect(escape_leading_slashes(request.get_full_path()))
    session.clear(request)
    back = (
        "the database you used before could not be opened either"
        if previous and previous != path
        else "there is no previous database to return to"
    )
    messages.error(
        request,
        f"Your selected database ({failed_name}) could not be opened and {back}. "
        f"Reason: {reason} Please select a database.",
    )
    return None if exempt else to_selector(request)


# What dbselect.catalog.postgres.describe_error says of a database that refuses connections.
PG_RESTORING = postgres.MAINTENANCE_REASON


def heal_if_abandoned(path: str) -> None:
    """Reopen a PostgreSQL database a restore or migration closed and never reopened (its
    process died mid-swap; nobody holds its maintenance lock): the next request works."""
    entry = catalog.entry_for_target(path)
    if entry is not None:
        with contextlib.suppress(Exception):
            postgres.reopen_if_abandoned(entry.url)


def being_swapped(path: str, reason: str) -> bool:
    """Return True when the PostgreSQL database `path` is only closed for a moment.

    A restore or migration closes it to new connections, then renames it and its replacement
    in one transaction (snapshots.pg): a connection attempt meanwhile is refused ("not
    currently accepting connections"), or, in the instant of the rename, told that the
    database "does not exist". The second case is told from a database really gone by asking
    the server whether it exists now.
    """
    if not catalog.is_target(path):
        return False
    if PG_RESTORING in reason:
        heal_if_abandoned(path)
        return True
    if "does not exist" not in reason:
        return False
    entry = catalog.entry_for_target(path)
    if entry is None:
        return False
    try:
        return postgres.database_exists(entry.url, entry.url.dbname)
    except Exception:  # the server cannot say: not a swap we can vouch for
        return False


# -- faults met while binding or in the view -----------------------------------

BUSY_TEMPLATE = "dbselect/busy.html"
# Seconds a client is asked to wait before retrying a busy database.
RETRY_AFTER = 5


class FaultKind(enum.Enum):
    """What went wrong with the database file."""

    BUSY = "busy"
    READ_ONLY = "read_only"
    DISK_FULL = "disk_full"
    TOO_SLOW = "too_slow"
    MAINTENANCE = "maintenance"
    UNUSABLE = "unusable"


@dataclass(frozen=True)
class Fault:
    """A classified database fault and the words that explain it."""

    kind: FaultKind
    detail: str


# SQLite primary result codes (https://sqlite.org/rescode.html).
_BY_CODE = {
    5: FaultKind.BUSY,  # SQLITE_BUSY
    6: FaultKind.BUSY,  # SQLITE_LOCKED
    8: FaultKind.READ_ONLY,  # SQLITE_READONLY
    9: FaultKind.TOO_SLOW,  # SQLITE_INTERRUPT (dbselect.engines.query_budget)
    10: FaultKind.UNUSABLE,  # SQLITE_IOERR
    11: FaultKind.UNUSABLE,  # SQLITE_CORRUPT
    13: FaultKind.DISK_FULL,  # SQLITE_FULL
    14: FaultKind.UNUSABLE,  # SQLITE_CANTOPEN
    26: FaultKind.UNUSABLE,  # SQLITE_NOTADB
}
# Used when the driver gives no result code: the texts SQLite puts in its messages, and
# (first, so no database name inside them matches another rule) PostgreSQL's for a database
# closed for a moment by a restore or migration on any app server (snapshots.pg): its
# sessions are ended (the transaction rolled back) and new ones refused until the swap ends.
_PG_MAINTENANCE_TEXTS = (
    "is not currently accepting connections",
    "terminating connection due to administrator command",
    "it seems to have just been dropped or renamed",
)
_BY_TEXT = (
    *((text, FaultKind.MAINTENANCE) for text in _PG_MAINTENANCE_TEXTS),
    ("locked", FaultKind.BUSY),
    ("busy", FaultKind.BUSY),
    ("readonly", FaultKind.READ_ONLY),
    ("disk is full", FaultKind.DISK_FULL),
    ("interrupted", FaultKind.TOO_SLOW),
    # trusted_schema=OFF refused a function called by the file's own trigger or view.
    ("unsafe use of", FaultKind.UNUSABLE),
    ("disk i/o error", FaultKind.UNUSABLE),
    ("malformed", FaultKind.UNUSABLE),
    ("not a database", FaultKind.UNUSABLE),
    ("unable to open database", FaultKind.UNUSABLE),
    # A validated NukeWorks file has every table: a missing one means the file changed.
    ("no such table", FaultKind.UNUSABLE),
    ("no such column", FaultKind.UNUSABLE),
)
_NOT_FAULTS = (IntegrityError, DataError, NotSupportedError)


def classify(exc: BaseException) -> Fault | None:
    """Return the fault `exc` stands for, or None when it is not a database-file fault."""
    if not isinstance(exc, DatabaseError | sqlite3.DatabaseError) or isinstance(exc, _NOT_FAULTS):
        return None
    message = str(exc)
    kind = None
    driver_error = exc if isinstance(exc, sqlite3.Error) else exc.__cause__
    code = getattr(driver_error, "sqlite_errorcode", None)
    if isinstance(code, int):
        kind = _BY_CODE.get(code & 0xFF)
    if kind is None:
        lowered = message.lower()
        kind = next((k for text, k in _BY_TEXT if text in lowered), None)
    if kind is None:
        return None
    return Fault(kind, _describe(kind, message))


def _describe(kind: FaultKind, message: str) -> str:
    if kind is FaultKind.BUSY:
        timeout = float(get_config()["BUSY_TIMEOUT"])
        return (
            "The database is busy: another user or program kept it locked for longer "
            f"than {timeout:g} seconds."
        )
    if kind is FaultKind.READ_ONLY:
        return "The database file is read-only for the server."
    if kind is FaultKind.DISK_FULL:
        return "The disk that holds the database is full."
    if kind is FaultKind.TOO_SLOW:
        limit = float(get_config()["QUERY_TIME_LIMIT"])
        return (
            f"The database took longer than {limit:g} seconds to answer, so the request was "
            "stopped (a very large query, or a trigger inside the file)."
        )
    if kind is FaultKind.MAINTENANCE and message:
        return PG_MAINTENANCE
    if kind is FaultKind.MAINTENANCE:
        wait = float(get_config()["MAINTENANCE_WAIT"])
        return (
            "An administrator is restoring or migrating this database; it stayed unavailable "
            f"for more than {wait:g} seconds."
        )
    return f"The database file became unreadable while in use ({message})."


PG_MAINTENANCE = (
    "An administrator is restoring or migrating this database right now; it is closed to "
    "every server for a moment."
)


def _unsaved_note(request: HttpRequest) -> str:
    if request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
        return "Nothing was changed."
    return "Your change was not saved."


def with_unsaved_note(request: HttpRequest, reason: str) -> str:
    """Return `reason`, telling the user of a refused write that it was not saved."""
    if request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
        return reason
    return f"{reason} {_unsaved_note(request)}"


def fault_response(request: HttpRequest, exc: BaseException) -> HttpResponse | None:
    """Answer a request whose database failed with `exc`; None when `exc` is not a fault."""
    if isinstance(exc, gate.GateClosed):
        return maintenance_page(request)
    fault = classify(exc)
    if fault is None:
        return None
    path = session.selected_path(request) or ""
    logger.warning(
        "database fault %s",
        json.dumps(
            {
                "kind": fault.kind.value,
                "path": path,
                "method": request.method,
                "url": request.path,
                "error": str(exc),
            },
            sort_keys=True,
        ),
    )
    if fault.kind is FaultKind.MAINTENANCE and "not currently accepting" in str(exc):
        heal_if_abandoned(path)
    if fault.kind is FaultKind.UNUSABLE and path:
        # Close this file's connections and make the next request re-validate it.
        engines.dispose(path)
        reason = f"{fault.detail} {_unsaved_note(request)}"
        outcome = fall_back(request, path, reason, exempt=False)
        if isinstance(outcome, HttpResponse):
            return outcome
    return busy_page(request, fault)


def busy_page(request: HttpRequest, fault: Fault) -> HttpResponse:
    """Return the 503 page for a database that cannot take this request now."""
    titles = {
        FaultKind.BUSY: "Database busy, try again",
        FaultKind.READ_ONLY: "Database is read-only",
        FaultKind.DISK_FULL: "Disk full",
        FaultKind.TOO_SLOW: "Request took too long",
        FaultKind.MAINTENANCE: "Database under maintenance, try again",
        FaultKind.UNUSABLE: "Database unavailable",
    }
    advice = {
        FaultKind.BUSY: "Try again in a moment.",
        FaultKind.READ_ONLY: (
            "Ask an administrator to check the file's permissions, or select another database."
        ),
        FaultKind.DISK_FULL: "Ask an administrator to free space on that disk.",
        FaultKind.TOO_SLOW: (
            "Try again; if it happens every time, ask an administrator to check the database."
        ),
        FaultKind.MAINTENANCE: "Try again in a moment; your data will be there.",
        FaultKind.UNUSABLE: "Select a database to continue.",
    }
    # Rendered without the request: the page must not touch the failing database (the
    # login, for instance, lives in it), so it uses no context processor.
    body = render_to_string(
        BUSY_TEMPLATE,
        {
            "title": titles[fault.kind],
            "detail": fault.detail,
            "unsaved": _unsaved_note(request),
            "advice": advice[fault.kind],
            "database_name": session.selected_name(request) or "",
            "retry_url": (
                escape_leading_slashes(request.get_full_path()) if request.method == "GET" else ""
            ),
        },
    )
    response = HttpResponse(body, status=503)
    if fault.kind in (FaultKind.BUSY, FaultKind.MAINTENANCE):
        response["Retry-After"] = str(RETRY_AFTER)
    return response


def maintenance_detail() -> str:
    """Return the sentence that explains a database closed for a restore or migration."""
    return _describe(FaultKind.MAINTENANCE, "")


def maintenance_page(request: HttpRequest) -> HttpResponse:
    """Return the 503 page for a request that waited too long for a restore or migration."""
    return busy_page(request, Fault(FaultKind.MAINTENANCE, maintenance_detail()))
