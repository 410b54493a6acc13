"""Signal receivers: login bookkeeping and re-binding when the session's database changes."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from accounts import ratelimit
from accounts.binding import AUTH_DB_PATH, drop_login, rebind, remember_binding
from audit import log as audit_log
from dbselect import session as db_session
from dbselect import state
from dbselect.signals import database_switched


@receiver(database_switched)
def on_database_switched(
    sender: Any,
    request: HttpRequest,
    path: str | None,
    alias: str | None,
    display_name: str | None,
    reason: str,
    **kwargs: Any,
) -> None:
    """Re-bind the login to the new database; remember it as the user's last database."""
    if path is None or alias is None:
        # No database any more: a login without its database means nothing.
        drop_login(request)
        return
    if reason == "restored":
        # The file's content was replaced by a snapshot: its users are the snapshot's now, so
        # the sign-in is verified afresh (not as a password change made in this session).
        request.session.pop(AUTH_DB_PATH, None)
    if not rebind(request, path, alias, display_name):
        return
    if reason == "selected":
        user = request.user
        user.last_db_path = path
        user.last_db_display_name = display_name
        user.save(update_fields=["last_db_path", "last_db_display_name"], using=alias)


@receiver(user_logged_in)
def on_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Bind a fresh login to the database it was made in, and audit it."""
    if request is None:
        return
    path = db_session.selected_path(request)
    remember_binding(request, user, path)
    ratelimit.reset_username(user.username)
    if state.get_active_alias() and not getattr(request, "_nukeworks_rebinding", False):
        audit_log.record("auth.login", target=path or "", user=user, request=request)


@receiver(user_logged_out)
def on_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None and user is not None and state.get_active_alias():
        audit_log.record(
            "auth.logout",
            target=db_session.selected_path(request) or "",
            user=user,
            request=request,
        )


@receiver(user_login_failed)
def on_login_failed(
    sender: Any, credentials: dict, request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Wrong credentials are counted by the sign-in forms themselves (accounts.forms).
    if request is not None and state.get_active_alias():
        audit_log.record(
            "auth.login_failed",
            target=db_session.selected_path(request) or "",
            outcome="failure",
            username=str(credentials.get("username", ""))[:150],
            request=request,
        )
