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


# Errors every operation on a database can answer, all in the one shape (api.errors).
_ERRORS_EVERYWHERE = {
    "401": "Not authenticated, or the token is not one of this database's (expired, revoked).",
    "403": "Authenticated, but not allowed (not an administrator or operator; CSRF).",
    "404": "Unknown database label, or no such object.",
    "409": "The database needs migration (detail.plan), or its file is not usable.",
    "429": "Too many requests (detail.retry_after_seconds).",
    "503": "The database is busy, under maintenance or too slow; retry after Retry-After.",
}
_ERRORS_ON_WRITES = {
    "400": "Invalid input (detail: the fields and what is wrong with them).",
    "413": "The request body is too large.",
    "423": "The database is protected: writes need a maintenance grant.",
}
ERROR_COMPONENT = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "detail"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "detail": {},
            },
        }
    },
}


def add_error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: document the error answers of every operation."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_COMPONENT
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        on_database = "{db}" in path
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            codes = dict(_ERRORS_EVERYWHERE) if on_database else {"429": _ERRORS_EVERYWHERE["429"]}
            if method in ("post", "put", "patch", "delete"):
                codes.update(_ERRORS_ON_WRITES)
            has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
            if not on_database or has_query:
                # Any query parameter can be given a value the operation refuses.
                codes.setdefault("400", _ERRORS_ON_WRITES["400"])
            for code, description in codes.items():
                responses.setdefault(
                    code,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
    return result
