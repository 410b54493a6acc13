"""What the caller may do: the same rules as the pages (dbselect.permissions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import SAFE_METHODS, BasePermission

from api.authentication import CurrentSessionAuthentication
from dbselect import permissions as rules

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


class IsDatabaseAdmin(BasePermission):
    """An administrator of the URL's database (the user model's `is_admin`)."""

    message = rules.ADMIN_DENIED

    def has_permission(self, request: Request, view: APIView) -> bool:
        return rules.is_admin(request.user)


class ReadOrAdmin(BasePermission):
    """Any signed-in user reads; writes need an administrator of the URL's database."""

    message = rules.ADMIN_DENIED

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or rules.is_admin(user)


class IsOperator(BasePermission):
    """A server-wide operator: an administrator of one of the operator databases.

    With a token: an admin token of an operator database. With the browser session (only on
    `current`): the session's own admin sign-in to an operator database, as the pages ask.
    """

    message = "Only an operator can do this: an administrator of an operator database."

    def has_permission(self, request: Request, view: APIView) -> bool:
        database = getattr(view, "database", None)
        if database is None:
            return False
        if request.auth is not None:
            return rules.is_admin(request.user) and (
                database.engine.path in rules.operator_databases()
            )
        # The browser session counts on `current` only, and then with its CSRF check (session
        # authentication checks it only for the user it signs in, who may not be the
        # operator): its own operator sign-in, verified against the operator database, as the
        # engines page asks, whatever database the session works on meanwhile.
        if not database.is_current or not rules.is_operator(request._request):
            return False
        CurrentSessionAuthentication().enforce_csrf(request)
        return True
