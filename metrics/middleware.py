"""MetricsMiddleware: count every request by the database it worked on (metrics.instruments).

First in MIDDLEWARE, so it sees every answer, static files and redirects included. The
database is the one the request was bound to (dbselect.state.bound_alias), which stays known
after dbselect's middleware has deactivated it. Costs a few counter updates per request.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest

from dbselect import state
from metrics import conf, instruments


class MetricsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        if not conf.enabled():
            raise MiddlewareNotUsed("NUKEWORKS_METRICS is off")
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self.__acall__(request)
        state.forget_bound()
        start = perf_counter()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            instruments.observe_request(state.bound_alias(), status, perf_counter() - start)

    async def __acall__(self, request: HttpRequest):
        # Under ASGI the database is bound in another context: such requests count as "none".
        state.forget_bound()
        start = perf_counter()
        status = 500
        try:
            response = await self.get_response(request)
            status = response.status_code
            return response
        finally:
            instruments.observe_request(state.bound_alias(), status, perf_counter() - start)
