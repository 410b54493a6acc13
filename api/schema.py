"""OpenAPI extensions: how drf-spectacular documents the API's authentication."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class DatabaseTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.DatabaseTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "`Token <token>`, from POST /api/v1/databases/{db}/auth/token or "
                "`manage.py apitoken`; valid for that database only."
            ),
        }


class CurrentSessionScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.CurrentSessionAuthentication"
    name = "sessionAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "The browser session (on /api/v1/databases/current/… only; CSRF).",
        }
