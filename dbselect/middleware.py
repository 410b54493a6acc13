"""DatabaseSelectionMiddleware: bind each request to its session's database file."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlencode

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from dbselect import registry, session, state
from audit import log as audit_log

logger = logging.getLogger("nukeworks.dbselect")

EXEMPT_PREFIXES = ("/select-db", "/static/", "/healthz", "/favicon.ico")

FALLBACK_MESSAGE = "Your selected database could not be opened. Reverted to {name}. Reason: {reason}"


def fallback_banner(name: str, reason: str) -> str:
    """Return the banner shown when a session is put back on its previous database."""
    return FALLBACK_MESSAGE.format(name=name, reason=reason)


class DatabaseSelectionMiddleware:
    """Send sessions without a database to /select-db; activate the selected one otherwise.

    Must run after SessionMiddleware and before AuthenticationMiddleware, because users are
    loaded from the selected database (system check dbselect.E002).
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
        outcome = self._bind(request)
        if isinstance(outcome, HttpResponse):
            return outcome
        state.activate(outcome)
        try:
            response = self.get_response(request)
        finally:
            state.deactivate()
        return response

    async def __acall__(self, request: HttpRequest):
        outcome = await sync_to_async(self._bind)(request)
        if isinstance(outcome, HttpResponse):
            return outcome
        state.activate(outcome)
        try:
            response = await self.get_response(request)
        finally:
            state.deactivate()
        return response

    def _bind(self, request: HttpRequest) -> str | HttpResponse | None:
        """Return the alias to activate, a response to send instead, or None (exempt path)."""
        path = session.selected_path(request)
        exempt = request.path_info.startswith(EXEMPT_PREFIXES)
        if not path:
            return None if exempt else _to_selector(request)
        try:
            engine = registry.open_engine(path)
        except registry.DatabaseUnavailable as exc:
            return self._fall_back(request, path, exc.reason, exempt)
        return engine.alias

    def _fall_back(
        self, request: HttpRequest, path: str, reason: str, exempt: bool
    ) -> str | HttpResponse | None:
        logger.warning("database unavailable path=%r reason=%r", path, reason)
        previous = request.session.get(session.PREVIOUS_PATH)
        failed_name = session.selected_name(request) or path
        if previous and previous != path:
            try:
                engine = registry.open_engine(previous)
            except registry.DatabaseUnavailable as exc:
                logger.warning("previous database unavailable path=%r reason=%r", previous, exc)
            else:
                session.switch(request, engine, reason="fallback")
                audit_log.record(
                    "database.fallback",
                    target=path,
                    outcome="failure",
                    detail=f"{reason} Reverted to {previous}.",
                    request=request,
                    using=engine.alias,
                )
                messages.warning(
                    request, fallback_banner(session.selected_name(request) or previous, reason)
                )
                # Never run this request (possibly a write) on a database it did not target.
                return HttpResponseRedirect(request.get_full_path()) if not exempt else engine.alias
        session.clear(request)
        messages.error(
            request,
            f"Your selected database ({failed_name}) could not be opened and there is no "
            f"previous database to return to. Reason: {reason} Please select a database.",
        )
        return None if exempt else _to_selector(request)


def _to_selector(request: HttpRequest) -> HttpResponseRedirect:
    url = reverse("dbselect:select")
    if request.method == "GET" and request.path_info != "/":
        url += "?" + urlencode({"next": request.get_full_path()})
    return HttpResponseRedirect(url)
