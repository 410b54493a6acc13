"""Throttling: per token (or signed-in session user) and per client address when anonymous."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


class TokenRateThrottle(SimpleRateThrottle):
    """One budget per token (per database and user for a browser session)."""

    scope = "token"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        database = getattr(view, "database", None)
        where = database.engine.path if database is not None else ""
        token = getattr(request.auth, "token_key", None)
        ident = f"token:{token}" if token else f"user:{where}:{request.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AnonymousRateThrottle(AnonRateThrottle):
    """Anonymous callers (no valid token), per client address."""

    scope = "anon"
