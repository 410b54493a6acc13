"""ProtectedDatabaseMiddleware: refuse writes to a protected database, audit maintenance writes."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audit import log as audit_log
from dbselect import protection, session, state

TEMPLATE = "dbselect/protected.html"


class ProtectedDatabaseMiddleware:
    """Apply dbselect.protection to every request working on a database.

    Runs after the authentication middleware: whether a write is allowed depends on the user
    signed in to this database (an admin with an active maintenance grant).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        alias = state.get_active_alias()
        if alias is None:
            return self.get_response(request)
        guard = protection.WriteGuard(alias, request.user)
        with protection.install(alias, guard):
            response = self.get_response(request)
        if guard.writes:
            audit_log.record(
                "protection.write",
                target=session.selected_path(request) or "",
                request=request,
                detail=(
                    f"under maintenance mode, {request.method} {request.path}: "
                    + ", ".join(guard.writes[:50])
                ),
            )
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Answer a refused write with a page that says why (403; 423 for API clients)."""
        if not isinstance(exception, protection.DatabaseProtected):
            return None
        audit_log.record(
            "protection.denied",
            target=session.selected_path(request) or "",
            outcome="denied",
            request=request,
            detail=f"{request.method} {request.path}: {exception.statement}",
        )
        status = 423 if request.path.startswith("/api/") else 403
        return render(
            request,
            TEMPLATE,
            {"statement": exception.statement, "database_name": session.selected_name(request)},
            status=status,
        )
