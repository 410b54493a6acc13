"""Every API error in one JSON shape: {"error": {"code", "message", "detail"}}.

`exception_handler` is DRF's EXCEPTION_HANDLER: DRF's own exceptions, Django's 404/403, the
API's database errors (`ApiError`) and SQLite faults met by a view (classified by
dbselect.recovery, as the pages do) all leave in that shape with the matching status code.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import DatabaseError, IntegrityError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from dbselect import engines, protection, recovery
from dbselect.engines import gate

RETRY_AFTER = str(recovery.RETRY_AFTER)


class ApiError(exceptions.APIException):
    """An error with a stable `code`, a sentence for people and optional structured detail."""

    def __init__(
        self,
        code: str,
        message: str,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        detail: dict[str, Any] | None = None,
        retry_after: bool = False,
    ) -> None:
        super().__init__(message, code)
        self.status_code = status_code
        self.error_code = code
        self.message = message
        self.extra = detail or {}
        self.retry_after = retry_after


def body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    """Return the one error shape."""
    return {"error": {"code": code, "message": message, "detail": detail or {}}}


# DRF's exception codes -> ours, where they differ.
_CODES = {
    "not_authenticated": "not_authenticated",
    "authentication_failed": "authentication_failed",
    "permission_denied": "permission_denied",
    "not_found": "not_found",
    "method_not_allowed": "method_not_allowed",
    "not_acceptable": "not_acceptable",
    "unsupported_media_type": "unsupported_media_type",
    "throttled": "throttled",
    "parse_error": "bad_request",
    "invalid": "invalid",
}


def fault_error(exc: BaseException) -> ApiError | None:
    """Return the API answer to a database fault met by a view, or None if it is not one."""
    if isinstance(exc, gate.GateClosed):
        fault = recovery.Fault(recovery.FaultKind.MAINTENANCE, recovery.maintenance_detail())
    else:
        fault = recovery.classify(exc)
    if fault is None:
        return None
    kind = recovery.FaultKind
    if fault.kind is kind.UNUSABLE:
        return ApiError("database_unavailable", fault.detail, status.HTTP_409_CONFLICT)
    code = {
        kind.BUSY: "database_busy",
        kind.MAINTENANCE: "maintenance",
        kind.TOO_SLOW: "too_slow",
        kind.READ_ONLY: "read_only",
        kind.DISK_FULL: "disk_full",
    }[fault.kind]
    retry = fault.kind in (kind.BUSY, kind.MAINTENANCE, kind.TOO_SLOW)
    return ApiError(code, fault.detail, status.HTTP_503_SERVICE_UNAVAILABLE, retry_after=retry)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: answer every error in the one shape."""
    if isinstance(exc, protection.DatabaseProtected):
        exc = ApiError(
            "database_protected",
            "This database is protected: writes need an administrator with a maintenance grant.",
            status.HTTP_423_LOCKED,
            detail={"statement": exc.statement},
        )
    elif isinstance(exc, RequestDataTooBig):
        exc = ApiError(
            "payload_too_large",
            "The request body is too large.",
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    elif isinstance(exc, IntegrityError):
        exc = ApiError("conflict", f"The change conflicts with existing data: {exc}", 409)
    elif isinstance(exc, DatabaseError | gate.GateClosed):
        fault = fault_error(exc)
        if fault is None:
            return None
        if fault.status_code == status.HTTP_409_CONFLICT:
            # Close this file's connections and make its next use re-validate it.
            database = getattr(context.get("view"), "database", None)
            if database is not None:
                engines.dispose(database.target)
        exc = fault
    if isinstance(exc, ApiError):
        response = Response(body(exc.error_code, exc.message, exc.extra), status=exc.status_code)
        if exc.retry_after:
            response["Retry-After"] = RETRY_AFTER
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        code, message, detail = "invalid", "The request has invalid fields.", data
    else:
        raw = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        code = _CODES.get(raw, raw) if isinstance(raw, str) else "error"
        message = str(data.get("detail", "")) if isinstance(data, dict) else str(data)
        detail = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            detail = {"retry_after_seconds": int(exc.wait)}
    response.data = body(code, message, detail)
    return response


API_PREFIX = "/api/"


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: the one error shape under /api/ (no route matched), Django's page elsewhere."""
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse(body("not_found", "No such API endpoint or object."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the one error shape under /api/, Django's page elsewhere (no traceback)."""
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse(
            body("server_error", "The server failed to answer this request."), status=500
        )
    return defaults.server_error(request)
