"""engines/: the engine cache of every worker process of this machine; dispose (operators).

Server-wide powers, so operators only (api.permissions.IsOperator: an admin token of an
operator database, or the session's operator sign-in on `current`), whatever database the
URL names. The same functions as the engines page (dbselect.engines.admin_table): the table
merged over every worker, and a dispose recorded in the shared store so that every worker
closes its connections, audited as `engine.dispose`.
"""

from __future__ import annotations

import datetime
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import ApiError
from api.permissions import IsOperator
from api.serializers import (
    EngineDisposedSerializer,
    EngineDisposeSerializer,
    EngineOverviewSerializer,
    ErrorBodySerializer,
)
from api.views.base import DatabaseView
from dbselect.engines import admin_table

ERRORS = {403: ErrorBodySerializer}


def _when(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


def overview_data(data: admin_table.Overview) -> dict[str, Any]:
    """Return the engines page's table as the API answers it."""
    return {
        "workers": [
            {
                "pid": w.pid,
                "host": w.host,
                "reported": w.reported_at,
                "current": w.current,
                "rss": w.rss,
                "fds": w.fds,
                "threads": w.threads,
                "aliases": w.aliases,
                "engines": w.engines,
                "open_connections": w.open_connections,
                "conn_max_age": w.conn_max_age,
                "bytes_per_alias": w.bytes_per_alias,
            }
            for w in data.workers
        ],
        "engines": [
            {
                "path": e.path,
                "kind": e.kind,
                "location": e.location,
                "alias": e.alias,
                "display_name": e.display_name,
                "journal_mode": e.journal_mode,
                "network": e.network,
                "first_used": e.first_used_at,
                "last_used": e.last_used_at,
                "requests": e.requests,
                "sessions": e.sessions,
                "open_connections": e.open_connections,
                "idle": e.idle(data.now, data.idle_seconds),
                "workers": [
                    {
                        "pid": u.pid,
                        "requests": u.requests,
                        "open_connections": u.open_connections,
                        "last_used": _when(u.last_used),
                    }
                    for u in e.workers
                ],
            }
            for e in data.engines
        ],
        "idle_seconds": data.idle_seconds,
        "missing_workers": data.missing,
        "sessions_countable": data.sessions.counts is not None,
    }


class EngineAdminView(DatabaseView):
    permission_classes = [IsOperator]


class EngineListView(EngineAdminView):
    @extend_schema(
        operation_id="engines_list",
        summary="Every cached engine of every worker process (operators)",
        responses={200: EngineOverviewSerializer, **ERRORS},
    )
    def get(self, request: Request, db: str) -> Response:
        return Response(EngineOverviewSerializer(overview_data(admin_table.overview())).data)


class EngineDisposeView(EngineAdminView):
    @extend_schema(
        operation_id="engines_dispose",
        summary="Dispose one engine in every worker process (operators)",
        description=(
            "Every worker closes its connections to the file and forgets it; sessions still "
            "on it re-open it, fully validated, on their next request. 404: not cached."
        ),
        request=EngineDisposeSerializer,
        responses={200: EngineDisposedSerializer, 404: ErrorBodySerializer, **ERRORS},
    )
    def post(self, request: Request, db: str) -> Response:
        form = EngineDisposeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        path = form.validated_data["path"]
        known = {e.path for e in admin_table.overview(wait=0).engines}
        if path not in known:
            raise ApiError(
                "engine_not_found",
                "That database is not in the engine cache (any more).",
                status.HTTP_404_NOT_FOUND,
            )
        admin_table.dispose_paths([path], request._request)
        return Response(EngineDisposedSerializer({"disposed": [path]}).data)


class EngineDisposeIdleView(EngineAdminView):
    @extend_schema(
        operation_id="engines_dispose_idle",
        summary="Dispose every engine no worker used for ENGINE_IDLE_SECONDS (operators)",
        request=None,
        responses={200: EngineDisposedSerializer, **ERRORS},
    )
    def post(self, request: Request, db: str) -> Response:
        idle = admin_table.overview().idle_paths()
        admin_table.dispose_paths(idle, request._request)
        return Response(EngineDisposedSerializer({"disposed": idle}).data)
