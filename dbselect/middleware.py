"""DatabaseSelectionMiddleware: bind each request to its session's database.

The request path in three modules: `session` (which target this browser works on) →
`engines.open(target)` (a usable engine, or DatabaseUnavailable) → `state.activate(alias)`
(the router sends every query there). Whatever goes wrong is answered by `recovery`.
"""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from dbselect import engines, recovery, session, state
from dbselect.conf import get_config
from dbselect.engines import gate, observe

# /metrics: scrapers have no session (a token or an allowed address); an admin's session is bound.
EXEMPT_PREFIXES = (
    "/select-db",
    "/static/",
    "/healthz",
    "/favicon.ico",
    "/robots.txt",
    "/metrics",
)


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
        # The slow-query log names the request's path and user (dbselect.engines.observe).
        observe.begin_request(request)
        try:
            outcome = self._bind(request)
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
            observe.end_request()

    async def __acall__(self, request: HttpRequest):
        # Under ASGI the gate is held by the one thread that runs sync code for every request,
        # so it protects less than under the shipped WSGI server (see engines.gate).
        try:
            outcome = await sync_to_async(self._bind)(request)
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

    def _bind(self, request: HttpRequest) -> str | HttpResponse | None:
        """Return the alias to activate, a response to send instead, or None (exempt path)."""
        try:
            return self._open(request)
        except (DatabaseError, gate.GateClosed) as exc:
            # One answer for faults met while binding or in the view (dbselect.recovery);
            # falling back re-binds the login, which reads the previous database.
            response = recovery.fault_response(request, exc)
            if response is None:
                raise
            return response

    def _open(self, request: HttpRequest) -> str | HttpResponse | None:
        if request.path_info.startswith(get_config()["SELF_BINDING_PREFIXES"]):
            return None  # the view binds the database its URL names
        target = session.selected_path(request)
        exempt = request.path_info.startswith(EXEMPT_PREFIXES)
        if not target:
            return None if exempt else recovery.to_selector(request)
        try:
            engine = engines.open(target, fingerprint=session.seen_fingerprint(request, target))
        except engines.DatabaseUnavailable as exc:
            reason = recovery.with_unsaved_note(request, exc.reason)
            return recovery.fall_back(request, target, reason, exempt=exempt)
        session.remember_fingerprint(request, engine)
        return engine.alias
