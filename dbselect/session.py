"""The session keys of the database selection, and the one place that changes them."""

from __future__ import annotations

import os

from django.http import HttpRequest

from dbselect.engines import Engine
from dbselect.signals import database_switched

SELECTED_PATH = "selected_db_path"
SELECTED_NAME = "selected_db_name"
PREVIOUS_PATH = "previous_db_path"
PREVIOUS_NAME = "previous_db_name"
# [path, creation mark] of the file this session first saw at its path (engines.fingerprints).
FINGERPRINT = "selected_db_fingerprint"
# path -> {"id": user pk (str), "hash": session auth hash, "username": …}: one sign-in per
# database this browser session signed in to (users live in each file; see accounts).
DB_LOGINS = "db_logins"


def selected_path(request: HttpRequest) -> str | None:
    """Return the database path this session works on, if any."""
    session = getattr(request, "session", None)
    return session.get(SELECTED_PATH) if session is not None else None


def selected_name(request: HttpRequest) -> str | None:
    """Return the display name of this session's database."""
    session = getattr(request, "session", None)
    return session.get(SELECTED_NAME) if session is not None else None


def display_name_for(path: str, name: str | None) -> str:
    """Return the name to show for a database: its own label, else its folder name."""
    if name:
        return name
    if path.startswith("postgresql:"):
        return path.split(":", 1)[1]
    parent = os.path.basename(os.path.dirname(path))
    return parent or os.path.basename(path)


def switch(request: HttpRequest, engine: Engine, *, reason: str) -> None:
    """Point the session at `engine`'s database and tell listeners (login re-binding…)."""
    session = request.session
    current = session.get(SELECTED_PATH)
    name = display_name_for(engine.path, engine.display_name)
    if reason == "selected" and current and current != engine.path:
        session[PREVIOUS_PATH] = current
        session[PREVIOUS_NAME] = session.get(SELECTED_NAME)
    elif reason == "fallback":
        session.pop(PREVIOUS_PATH, None)
        session.pop(PREVIOUS_NAME, None)
    session[SELECTED_PATH] = engine.path
    session[SELECTED_NAME] = name
    # A new selection (even of the same path) accepts the file as it is now.
    session.pop(FINGERPRINT, None)
    database_switched.send(
        sender=switch,
        request=request,
        path=engine.path,
        alias=engine.alias,
        display_name=name,
        reason=reason,
    )


def seen_fingerprint(request: HttpRequest, path: str) -> str | None:
    """Return the creation mark of the database this session first saw at `path`, if any."""
    seen = request.session.get(FINGERPRINT)
    return seen[1] if isinstance(seen, list) and len(seen) == 2 and seen[0] == path else None


def remember_fingerprint(request: HttpRequest, engine: Engine) -> None:
    """Record the creation mark of the engine's file, the first time this session sees it."""
    mark = engine.fingerprint_mark
    if mark is not None and seen_fingerprint(request, engine.path) is None:
        request.session[FINGERPRINT] = [engine.path, mark[1]]


def login_for(request: HttpRequest, path: str | None) -> dict[str, str] | None:
    """Return the sign-in this session made in the database at `path`, if any."""
    if not path:
        return None
    logins = request.session.get(DB_LOGINS) or {}
    login = logins.get(path)
    return dict(login) if isinstance(login, dict) else None


def all_logins(request: HttpRequest) -> dict[str, dict[str, str]]:
    """Return every sign-in of this session: database path -> login."""
    session = getattr(request, "session", None)
    logins = session.get(DB_LOGINS) if session is not None else None
    return {p: dict(v) for p, v in (logins or {}).items() if isinstance(v, dict)}


def remember_login(
    request: HttpRequest, path: str, user_id: object, auth_hash: str, username: str
) -> None:
    """Record this session's sign-in to the database at `path`."""
    logins = dict(request.session.get(DB_LOGINS) or {})
    logins[path] = {"id": str(user_id), "hash": auth_hash, "username": username}
    request.session[DB_LOGINS] = logins


def forget_login(request: HttpRequest, path: str | None) -> None:
    """Forget this session's sign-in to the database at `path` (the others stay)."""
    logins = dict(request.session.get(DB_LOGINS) or {})
    if path in logins:
        del logins[path]
        request.session[DB_LOGINS] = logins


def clear(request: HttpRequest) -> None:
    """Forget the session's database (it goes back to the selector)."""
    for key in (SELECTED_PATH, SELECTED_NAME, PREVIOUS_PATH, PREVIOUS_NAME, FINGERPRINT):
        request.session.pop(key, None)
    database_switched.send(
        sender=clear, request=request, path=None, alias=None, display_name=None, reason="cleared"
    )
