"""Put a session back on its previous database when the selected one becomes unusable.

Never silent: every fallback shows the banner, writes an audit entry in the database the
session returns to, and a request that was aimed at the broken database (possibly a write)
is answered with a redirect instead of being run on another one.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.contrib import messages
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import escape_leading_slashes

from accounts.binding import AUTH_USERNAME
from audit import log as audit_log
from dbselect import maintenance_gate, registry, session

logger = logging.getLogger("nukeworks.dbselect")

FALLBACK_MESSAGE = (
    "Your selected database could not be opened. Reverted to {name}. Reason: {reason}"
)


def fallback_banner(name: str, reason: str) -> str:
    """Return the banner shown when a session is put back on its previous database."""
    return FALLBACK_MESSAGE.format(name=name, reason=reason)


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
    logger.warning("database unavailable path=%r reason=%r", path, reason)
    previous = request.session.get(session.PREVIOUS_PATH)
    failed_name = session.selected_name(request) or path
    if previous and previous != path:
        try:
            engine = registry.open_engine(previous)
            session.switch(request, engine, reason="fallback")
        except (registry.DatabaseUnavailable, maintenance_gate.GateClosed) as exc:
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
                # The login is not loaded yet when the middleware falls back: name it here.
                username=request.session.get(AUTH_USERNAME) or None,
                using=engine.alias,
            )
            messages.warning(
                request, fallback_banner(session.selected_name(request) or previous, reason)
            )
            # Never run this request (possibly a write) on a database it did not target.
            if exempt:
                return engine.alias
            # escape_leading_slashes: a path such as //evil.example/ must not leave the site.
            return HttpResponseRedirect(escape_leading_slashes(request.get_full_path()))
    session.clear(request)
    messages.error(
        request,
        f"Your selected database ({failed_name}) could not be opened and there is no "
        f"previous database to return to. Reason: {reason} Please select a database.",
    )
    return None if exempt else to_selector(request)
