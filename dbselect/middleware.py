"""DatabaseSelectionMiddleware: bind each request to its session's database file."""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from dbselect import engines, recovery, session, state
from dbselect.engines import fingerprint, gate
from dbselect.recovery import FALLBACK_MESSAGE, fall_back, fallback_banner, to_selector

__all__ = ["EXEMPT_PREFIXES", "FALLBACK_MESSAGE", "DatabaseSelectionMiddleware", "fallback_banner"]

EXEMPT_PREFIXES = ("/select-db", "/static/", "/healthz", "/favicon.ico")


class DatabaseSelectionMiddleware:
    """Send sessions without a database to /select-db; activate the selected one otherwise.

    Must run after SessionMiddleware and before AuthenticationMiddleware, because users are
    loaded from the selected database (system check dbselect.E002). A SQLite fault raised by
    the view (locked, read-only, corrupt…) is answered by `process_exception` through
    dbselect.recovery: a 503 page or a fallback, never a 500.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self.__acall__(request)
        try:
            outcome = self._safe_bind(request)
            if isinstance(outcome, HttpResponse):
                return outcome
            if outcome is not None:
                state.activate(outcome)
            try:
                return self.get_response(request)
            finally:
                state.deactivate()
        finally:
            # The request no longer works on its database: a restore may proceed.
            gate.leave_all()

    async def __acall__(self, request: HttpRequest):
        # Under ASGI the gate is held by the one thread that runs sync code for every request,
        # so it protects less than under the shipped WSGI server (see maintenance_gate).
        try:
            outcome = await sync_to_async(self._safe_bind)(request)
            if isinstance(outcome, HttpResponse):
                return outcome
            if outcome is not None:
                state.activate(outcome)
            try:
                return await self.get_response(request)
            finally:
                state.deactivate()
        finally:
            await sync_to_async(gate.leave_all)()

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Turn a database-file fault raised by the view into a 503 page or a fallback."""
        return recovery.fault_response(request, exception)

    def _safe_bind(self, request: HttpRequest) -> str | HttpResponse | None:
        try:
            return self._bind(request)
        except (DatabaseError, gate.GateClosed) as exc:
            # One answer for faults met while binding or in the view (dbselect.recovery); falling
            # back re-binds the login, which reads the previous database.
            response = recovery.fault_response(request, exc)
            if response is None:
                raise
            return response

    def _bind(self, request: HttpRequest) -> str | HttpResponse | None:
        """Return the alias to activate, a response to send instead, or None (exempt path)."""
        path = session.selected_path(request)
        exempt = request.path_info.startswith(EXEMPT_PREFIXES)
        if not path:
            return None if exempt else to_selector(request)
        try:
            engine = engines.open(path)
        except engines.DatabaseUnavailable as exc:
            reason = recovery.with_unsaved_note(request, exc.reason)
            return fall_back(request, path, reason, exempt=exempt)
        if fingerprint.replaced(request, engine):
            # Same path, same inode, another database: never work on it silently.
            engines.dispose(path)
            return fall_back(request, path, fingerprint.REPLACED, exempt=exempt)
        return engine.alias
