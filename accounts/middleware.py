"""DatabaseAuthenticationMiddleware: request.user is the session's sign-in to *this* database."""

from __future__ import annotations

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.binding import resume
from dbselect import session as db_session
from dbselect import state


def get_database_user(request: HttpRequest):
    """Return the user of the session's sign-in to its current database, or AnonymousUser.

    Verified against that file on every request (accounts.binding). Unlike Django's own
    get_user(), a sign-in that no longer holds is put aside without flushing the session:
    the database selection and the sign-ins to other databases stay.
    """
    path = db_session.selected_path(request)
    alias = state.get_active_alias()
    if not path or not alias:
        return AnonymousUser()
    return resume(request, path, alias) or AnonymousUser()


class DatabaseAuthenticationMiddleware(AuthenticationMiddleware):
    """Django's AuthenticationMiddleware, loading the user from the session's own sign-in to
    the selected database (never one carried over from another file by username).

    Must run after dbselect's middleware, which binds the request to its database.
    """

    def process_request(self, request: HttpRequest) -> None:
        request.user = SimpleLazyObject(lambda: get_database_user(request))
