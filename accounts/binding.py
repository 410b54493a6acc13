"""Keep a login bound to the database file it was made in.

A user id is only meaningful inside one file: id 1 may be Alice in file A and Bob in file B.
The session remembers the username and the path the login belongs to; whenever the session's
database changes, the login is re-bound by username in the new file, or dropped when that user
does not exist or is inactive there.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest

from audit import log as audit_log
from dbselect import state

logger = logging.getLogger("nukeworks.accounts")

AUTH_USERNAME = "auth_username"
AUTH_DB_PATH = "auth_db_path"
BACKEND = "django.contrib.auth.backends.ModelBackend"


def remember_binding(request: HttpRequest, username: str, path: str | None) -> None:
    """Note which username and database file the session's login belongs to."""
    request.session[AUTH_USERNAME] = username
    request.session[AUTH_DB_PATH] = path


def drop_login(request: HttpRequest) -> None:
    """Sign the session out without forgetting its database selection."""
    if SESSION_KEY not in request.session:
        return
    for key in (SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY, AUTH_USERNAME, AUTH_DB_PATH):
        request.session.pop(key, None)
    request.session.cycle_key()
    request.user = AnonymousUser()


def rebind(request: HttpRequest, path: str, alias: str, display_name: str | None) -> bool:
    """Re-bind the session's login to the database `alias`; return True if still logged in."""
    session = request.session
    if SESSION_KEY not in session:
        session.pop(AUTH_DB_PATH, None)
        return False
    if session.get(AUTH_DB_PATH) == path:
        return True
    username = session.get(AUTH_USERNAME)
    user = None
    if username:
        user = get_user_model()._default_manager.db_manager(alias).filter(username=username).first()
    if user is None or not user.is_active:
        drop_login(request)
        messages.info(
            request,
            f"You were signed out: user “{username}” has no active account in "
            f"{display_name or path}. Sign in with an account of this database.",
        )
        logger.info("login dropped on switch user=%r path=%r", username, path)
        return False
    # login() flushes the whole session (database selection included) when it finds another
    # user's keys in it; the old login is being replaced deliberately, so drop its keys first.
    for key in (SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY):
        session.pop(key, None)
    request._nukeworks_rebinding = True
    try:
        with state.override(alias):
            auth_login(request, user, backend=BACKEND)
    finally:
        request._nukeworks_rebinding = False
    remember_binding(request, user.username, path)
    audit_log.record(
        "auth.rebind",
        target=path,
        user=user,
        request=request,
        using=alias,
        detail="login carried over to this database by username",
    )
    return True
