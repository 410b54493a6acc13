"""Who is calling: a token of the URL's database, or (for `current` only) the browser session.

Tokens are django-rest-knox tokens: only a SHA-512 digest is stored, in the `knox_authtoken`
table of the database the token belongs to, with an expiry. The request is bound to the URL's
database before authentication (api.views.base), so the lookup happens in that file only.
"""

from __future__ import annotations

from knox.auth import TokenAuthentication
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from dbselect import session


class DatabaseTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <token>`, checked in the URL's database file only."""

    def authenticate(self, request: Request):
        try:
            return super().authenticate(request)
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None


class CurrentSessionAuthentication(SessionAuthentication):
    """The browser session's own sign-in to its selected database, with CSRF on writes.

    Used only on /api/v1/databases/current/…: a session cookie never authenticates a request
    for a database named by label.
    """

    def authenticate(self, request: Request):
        if not session.selected_path(request._request):
            return None
        return super().authenticate(request)
