"""One sign-in per database: a login never travels between files.

A user id means someone only inside one file (id 1 may be Alice in file A and Bob in file B),
and a username means nothing across files either: anyone can make a file with a user named
`admin`. So a browser session keeps one sign-in per database it signed in to
(`dbselect.session.DB_LOGINS`: user id, Django's session auth hash, username), and:

- working on a database, the session is signed in there only with the sign-in it made *in that
  file*, verified against that file on every request (the user must still exist, be active and
  have the same password: the session auth hash changes with it);
- switching back to a database signed in to earlier resumes that sign-in; switching to any
  other one asks for a sign-in there (the login form is pre-filled with the last username).

Django's own session keys (SESSION_KEY, HASH_SESSION_KEY, BACKEND_SESSION_KEY) mirror the
sign-in of the current database only; `AUTH_DB_PATH` says which database they belong to.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare

from audit import log as audit_log
from dbselect import session as db_session

logger = logging.getLogger("nukeworks.accounts")

AUTH_USERNAME = "auth_username"
AUTH_DB_PATH = "auth_db_path"
BACKEND = "django.contrib.auth.backends.ModelBackend"
DJANGO_KEYS = (SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY)


def remember_binding(request: HttpRequest, user: AbstractBaseUser, path: str | None) -> None:
    """Record a fresh sign-in to the database at `path` (called when a user logs in)."""
    request.session[AUTH_USERNAME] = user.get_username()
    request.session[AUTH_DB_PATH] = path
    if path:
        db_session.remember_login(
            request, path, user.pk, user.get_session_auth_hash(), user.get_username()
        )


def _clear_django_keys(request: HttpRequest) -> None:
    for key in (*DJANGO_KEYS, AUTH_DB_PATH):
        request.session.pop(key, None)


def drop_login(request: HttpRequest) -> None:
    """Put the current database's sign-in aside (the session keeps its other sign-ins)."""
    if SESSION_KEY in request.session:
        _clear_django_keys(request)
        request.session.cycle_key()
    request.user = AnonymousUser()


def verified_user(request: HttpRequest, path: str, alias: str) -> AbstractBaseUser | None:
    """Return the user of this session's sign-in to `path`, checked against that file.

    None when the session never signed in there, or the user is gone, inactive or has
    another password now; such a sign-in is forgotten. A password changed by the user in
    this very session (Django's update_session_auth_hash) keeps the sign-in.
    """
    login = db_session.login_for(request, path)
    if login is None:
        return None
    model = get_user_model()
    try:
        # get(), not filter().first(): no ORDER BY to build on every request.
        user = model._default_manager.db_manager(alias).get(pk=login["id"])
    except (model.DoesNotExist, ValueError):
        user = None
    if user is not None and user.is_active:
        current = user.get_session_auth_hash()
        if constant_time_compare(current, login.get("hash", "")):
            return user
        own_change = request.session.get(AUTH_DB_PATH) == path and request.session.get(
            SESSION_KEY
        ) == str(user.pk)
        if own_change and constant_time_compare(current, request.session.get(HASH_SESSION_KEY, "")):
            db_session.remember_login(request, path, user.pk, current, user.get_username())
            return user
    db_session.forget_login(request, path)
    logger.info("sign-in ended path=%r user=%r", path, login.get("username"))
    return None


def resume(request: HttpRequest, path: str, alias: str) -> AbstractBaseUser | None:
    """Make the session's sign-in to `path` the current one, if it has a valid one."""
    session = request.session
    user = verified_user(request, path, alias)
    if user is None:
        if session.get(AUTH_DB_PATH) == path or SESSION_KEY in session:
            drop_login(request)
        return None
    if session.get(AUTH_DB_PATH) != path or session.get(SESSION_KEY) != str(user.pk):
        _clear_django_keys(request)
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = BACKEND
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session[AUTH_DB_PATH] = path
        session[AUTH_USERNAME] = user.get_username()
    return user


def rebind(request: HttpRequest, path: str, alias: str, display_name: str | None) -> bool:
    """After a switch to `path`: resume this session's own sign-in there; True if signed in.

    Never looks anybody up by username: without a sign-in made in that file, the session is
    signed out there and the login form asks for one.
    """
    had_login = SESSION_KEY in request.session
    user = resume(request, path, alias)
    if user is None:
        request.user = AnonymousUser()
        if had_login:
            messages.info(
                request,
                f"Sign in to {display_name or path}: each database has its own accounts, "
                "and this session has not signed in to this one.",
            )
        return False
    request.user = user
    audit_log.record(
        "auth.resume",
        target=path,
        user=user,
        request=request,
        using=alias,
        detail="this session's earlier sign-in to this database, resumed",
    )
    return True
