"""DatabaseView: every endpoint under /api/v1/databases/{db}/ starts here.

Before DRF authenticates anybody, the request is bound to the database its URL names
(api.binding), so tokens and users are looked up in that file only; the binding ends with
the view. On `current` the browser session's sign-in authenticates too (CSRF on writes); on
a label only a token of that database does.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from rest_framework.request import Request
from rest_framework.views import APIView

from api import binding
from api.authentication import CurrentSessionAuthentication, DatabaseTokenAuthentication
from api.binding import BoundDatabase
from dbselect import protection


class DatabaseBoundMixin:
    """Bind the request to the URL's `{db}` before authentication; unbind afterwards."""

    # False for the migration endpoints: they work on databases that need migration.
    requires_up_to_date = True
    # Session authentication (with its CSRF check) is used on `current` only.
    authentication_classes = [DatabaseTokenAuthentication, CurrentSessionAuthentication]
    database: BoundDatabase | None = None

    def get_authenticators(self) -> list[Any]:
        current = self.kwargs.get("db") == binding.CURRENT  # type: ignore[attr-defined]
        return [
            auth()
            for auth in self.authentication_classes
            if current or auth is not CurrentSessionAuthentication
        ]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.database = binding.bind(
            request._request, kwargs["db"], up_to_date=self.requires_up_to_date
        )
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        # A protected database refuses writes unless this user holds a maintenance grant,
        # as for the pages (dbselect.protection); the refusal is a 423.
        alias = self.database.alias
        guard = protection.WriteGuard(alias, request.user)
        self._guard.enter_context(protection.install(alias, guard))

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self._guard = contextlib.ExitStack()
        try:
            with self._guard:
                return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        finally:
            binding.unbind()


class DatabaseView(DatabaseBoundMixin, APIView):
    """An APIView on the URL's database."""
