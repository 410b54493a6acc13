"""DatabaseBoundLoginMiddleware: a login never outlives a change of database file."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import SESSION_KEY
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from accounts.binding import AUTH_DB_PATH, rebind
from dbselect import faults, state
from dbselect import session as db_session


class DatabaseBoundLoginMiddleware:
    """Re-bind (or drop) a login made in another database before any view sees request.user.

    Runs after AuthenticationMiddleware. The normal path costs two dict look-ups.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        if SESSION_KEY in session:
            path = db_session.selected_path(request)
            alias = state.get_active_alias()
            if path and alias and session.get(AUTH_DB_PATH) != path:
                try:
                    rebind(request, path, alias, db_session.selected_name(request))
                except DatabaseError as exc:
                    # A locked or broken file: a 503 page or a fallback, never a 500.
                    response = faults.fault_response(request, exc)
                    if response is None:
                        raise
                    return response
        return self.get_response(request)
