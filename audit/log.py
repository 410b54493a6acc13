"""record(): write an audit entry to a database and emit it as a structured log line."""

from __future__ import annotations

import json
import logging

from django.db import DEFAULT_DB_ALIAS, DatabaseError, router
from django.http import HttpRequest

logger = logging.getLogger("nukeworks.audit")


def _client_addr(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    return str(request.META.get("REMOTE_ADDR", ""))[:64]


def record(
    action: str,
    *,
    target: str = "",
    outcome: str = "success",
    detail: str = "",
    request: HttpRequest | None = None,
    user: object | None = None,
    username: str | None = None,
    using: str | None = None,
) -> None:
    """Record `action` in the database `using` (the request's own by default).

    With neither `using` nor a request database (a session that has selected none), the
    entry is only logged: the router would otherwise send it to the `default` alias, a file
    the visitor never chose. An audit failure never breaks the action it describes: it is
    logged instead.
    """
    from audit.models import AuditEntry

    if user is None and request is not None:
        candidate = getattr(request, "user", None)
        if candidate is not None and getattr(candidate, "is_authenticated", False):
            user = candidate
    name = username or (getattr(user, "username", "") if user is not None else "")
    line = {
        "action": action,
        "outcome": outcome,
        "user": name,
        "target": target,
        "detail": detail,
        "remote_addr": _client_addr(request),
        "database": using or "",
    }
    # The entry's fields also as a structured field: a JSON log line holds them as an object.
    logger.info("audit %s", json.dumps(line, sort_keys=True), extra={"audit": line})
    # The routers (dbselect's) name the request's database; `default` means there is none.
    # Asked through Django's router, so audit depends on no app that records entries.
    if using is None and router.db_for_write(AuditEntry) == DEFAULT_DB_ALIAS:
        return
    user_in_db = user if user is not None and getattr(user, "_state", None) is not None else None
    if user_in_db is not None and using and user_in_db._state.db != using:
        user_in_db = None
    try:
        AuditEntry.objects.db_manager(using).create(
            username=name[:150],
            # By id: the entry and the user live in the same file, whatever alias is active.
            user_id=user_in_db.pk if user_in_db is not None else None,
            action=action[:64],
            target=target,
            outcome=outcome,
            detail=detail,
            remote_addr=_client_addr(request),
        )
    except DatabaseError as exc:
        logger.error("audit entry not stored: %s %s", action, exc)
