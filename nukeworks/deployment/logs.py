"""Log lines: a request id on every line, human-readable or JSON (`NUKEWORKS_LOG_FORMAT`).

- `RequestIdMiddleware` (first in MIDDLEWARE) gives every request an id: the incoming
  `X-Request-ID` when a proxy sent a sane one (letters, digits and `._:+/=@-`, at most 128
  characters), else a new random one. It is in a context variable for the whole request and
  in the response's `X-Request-ID` header.
- The formatters put it on every line (`-` outside a request): `plain` (development's and
  testing's default) or `json` (production's: one JSON object per line, by python-json-logger).
- `gunicorn_logging()` gives gunicorn's own error and access lines the same JSON shape; an
  access line takes the request id from the response header.

Nothing here reads Django's settings at import time: gunicorn's configuration imports it.
"""

from __future__ import annotations

import logging
import logging.config
import re
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

FORMATS = ("plain", "json")
REQUEST_ID_HEADER = "X-Request-ID"
_META_KEY = "HTTP_X_REQUEST_ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{0,127}")
NO_REQUEST = "-"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

_request_id: ContextVar[str | None] = ContextVar("nukeworks_request_id", default=None)


def current_request_id() -> str | None:
    """Return the id of the request this code runs for, or None outside a request."""
    return _request_id.get()


def request_id_for(meta: Mapping[str, Any]) -> str:
    """Return the incoming X-Request-ID when it is sane, else a new id."""
    incoming = meta.get(_META_KEY)
    if isinstance(incoming, str) and SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give each request its id (context variable, request.request_id, response header)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        request_id = request.request_id = request_id_for(request.META)
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def __acall__(self, request):
        request_id = request.request_id = request_id_for(request.META)
        token = _request_id.set(request_id)
        try:
            response = await self.get_response(request)
        finally:
            _request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


def _with_request_id(record: logging.LogRecord) -> None:
    if not getattr(record, "request_id", None):
        record.request_id = current_request_id() or NO_REQUEST


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger [request id] message`."""

    def __init__(self, fmt: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(fmt or PLAIN_FORMAT, *args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        _with_request_id(record)
        return super().format(record)


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id,
    process, and whatever the call passed as `extra` (e.g. the audit entry's fields)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s %(request_id)s %(process)d")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        _with_request_id(record)
        return super().format(record)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        # Django's request logger passes the request object: its path is in the message.
        log_data.pop("request", None)
        if log_data.get("request_id") == NO_REQUEST:
            log_data["request_id"] = None


class GunicornAccessJsonFormatter(JsonFormatter):
    """gunicorn's access lines as JSON: the request's fields, its id from the response."""

    FIELDS = {
        "h": "remote_addr",
        "m": "method",
        "U": "path",
        "q": "query",
        "s": "status",
        "B": "bytes",
        "M": "duration_ms",
        "a": "user_agent",
    }

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        atoms = record.args if isinstance(record.args, Mapping) else {}
        for atom, field in self.FIELDS.items():
            value = atoms.get(atom)
            if value not in (None, "-"):
                log_data[field] = int(value) if field in ("status", "bytes") else value
        request_id = atoms.get("{x-request-id}o")
        if request_id and request_id != "-":
            log_data["request_id"] = request_id


def _formatter(log_format: str) -> dict[str, Any]:
    if log_format not in FORMATS:
        raise ImproperlyConfigured(
            f"NUKEWORKS_LOG_FORMAT is {log_format!r}: use one of {', '.join(FORMATS)}."
        )
    name = "JsonFormatter" if log_format == "json" else "PlainFormatter"
    return {"()": f"{__name__}.{name}"}


def logging_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """Django's LOGGING: NukeWorks' loggers at `level`, Django's warnings and errors, and
    every other library's warnings, all in one format on standard error."""
    handler = {"class": "logging.StreamHandler", "formatter": "nukeworks"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"nukeworks": _formatter(log_format)},
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": "WARNING"},
        "loggers": {
            "nukeworks": {"handlers": ["console"], "level": level, "propagate": False},
            "django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
            # 4xx answers are in the access log; server errors (with their traceback) here.
            "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
            "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "huey": {"handlers": ["console"], "level": "INFO", "propagate": False},
            # A failing /readyz check is in its answer; a traceback per probe is noise. An
            # unexpected exception in a check is still logged (ERROR).
            "health_check": {"handlers": ["console"], "level": "ERROR", "propagate": False},
            # Python's warnings (logging.captureWarnings, see configure()).
            "py.warnings": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        },
    }


def configure(config: dict[str, Any]) -> None:
    """LOGGING_CONFIG: dictConfig, and Python's warnings as log lines when the configuration
    has a "py.warnings" logger (they are printed raw otherwise, breaking a JSON log)."""
    logging.config.dictConfig(config)
    if "py.warnings" in config.get("loggers", {}):
        logging.captureWarnings(True)


def gunicorn_logging(log_format: str, access_log: str | None) -> dict[str, Any] | None:
    """gunicorn's `logconfig_dict` for `log_format` (None: gunicorn's own plain lines).

    `access_log` is gunicorn's accesslog: "-" (standard output), a file, or None (off).
    """
    _formatter(log_format)  # an unknown format stops here
    if log_format != "json":
        return None
    handlers: dict[str, Any] = {
        "error": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        },
    }
    access_handlers: list[str] = []
    if access_log == "-":
        handlers["access"] = {
            "class": "logging.StreamHandler",
            "formatter": "access",
            "stream": "ext://sys.stdout",
        }
        access_handlers = ["access"]
    elif access_log:
        handlers["access"] = {
            "class": "logging.FileHandler",
            "formatter": "access",
            "filename": access_log,
        }
        access_handlers = ["access"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": f"{__name__}.JsonFormatter"},
            "access": {"()": f"{__name__}.GunicornAccessJsonFormatter"},
        },
        "handlers": handlers,
        # Nothing reaches the root logger's plain handler that gunicorn would otherwise add.
        "root": {"handlers": [], "level": "WARNING"},
        "loggers": {
            "gunicorn.error": {"handlers": ["error"], "level": "INFO", "propagate": False},
            "gunicorn.access": {
                "handlers": access_handlers,
                "level": "INFO" if access_handlers else "CRITICAL",
                "propagate": False,
            },
        },
    }
