"""snapshots/ of the URL's database: list, create, show, delete, restore (its admins only).

The same service as the snapshot pages (snapshots.service), so the same rules: the folder
beside the database, the folder lock, a restore that verifies the snapshot, closes the
database's maintenance gate, takes a safety snapshot first and disposes the engine, and the
same audit entries (the service records snapshot.create/delete/restore; a refused write is
recorded as snapshot.denied, as the pages do).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import ApiError
from api.permissions import IsDatabaseAdmin
from api.serializers import (
    ErrorBodySerializer,
    RestoreResultSerializer,
    SnapshotCreateSerializer,
    SnapshotListSerializer,
    SnapshotSerializer,
)
from api.views.admin import AuditedDenialMixin, username_of
from api.views.base import DatabaseView
from dbselect import engines, session
from dbselect.engines import gate
from snapshots import service

# As on the page: ignored entries of the folder beyond this many are only counted.
MAX_IGNORED_SHOWN = 50

ERRORS = {
    403: ErrorBodySerializer,
    404: ErrorBodySerializer,
    409: ErrorBodySerializer,
    422: ErrorBodySerializer,
}


def snapshot_error(exc: service.SnapshotError, nothing_done: str) -> ApiError:
    """Return the API answer to a refused or failed snapshot operation."""
    if isinstance(exc, service.SnapshotNotFound):
        # Also an entry of the folder that is not a snapshot (a link, a file without sidecar).
        return ApiError("snapshot_not_found", str(exc), status.HTTP_404_NOT_FOUND)
    if isinstance(exc, service.SnapshotBusy):
        return ApiError(
            "snapshot_busy", f"{nothing_done} {exc}", status.HTTP_409_CONFLICT, retry_after=True
        )
    return ApiError(
        "snapshot_failed", f"{nothing_done} {exc}", status.HTTP_422_UNPROCESSABLE_ENTITY
    )


class SnapshotAdminView(AuditedDenialMixin, DatabaseView):
    """Every snapshot endpoint: admins of the URL's database only (403 otherwise)."""

    permission_classes = [IsDatabaseAdmin]
    denied_action = "snapshot.denied"

    @property
    def path(self) -> str:
        """The database file, as the pages name it (the engine's real path)."""
        assert self.database is not None
        return self.database.engine.path


class SnapshotListView(SnapshotAdminView):
    @extend_schema(
        operation_id="snapshots_list",
        summary="List the database's snapshots",
        responses={200: SnapshotListSerializer, **ERRORS},
    )
    def get(self, request: Request, db: str) -> Response:
        try:
            scanned = service.scan_folder(self.path)
        except service.SnapshotError as exc:
            raise snapshot_error(exc, "The snapshots folder cannot be read.") from None
        data = {
            "snapshots": scanned.snapshots,
            "total_size": sum(s.size for s in scanned.snapshots),
            "ignored": scanned.ignored[:MAX_IGNORED_SHOWN],
            "ignored_more": max(0, len(scanned.ignored) - MAX_IGNORED_SHOWN),
        }
        return Response(SnapshotListSerializer(data).data)

    @extend_schema(
        operation_id="snapshots_create",
        summary="Take a snapshot now",
        request=SnapshotCreateSerializer,
        responses={201: SnapshotSerializer, 400: ErrorBodySerializer, **ERRORS},
    )
    def post(self, request: Request, db: str) -> Response:
        form = SnapshotCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            snapshot = service.create_snapshot(
                self.path,
                note=form.validated_data.get("note", ""),
                username=username_of(request),
                request=request._request,
            )
        except service.SnapshotError as exc:
            raise snapshot_error(exc, "No snapshot was taken.") from None
        return Response(SnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)


class SnapshotDetailView(SnapshotAdminView):
    @extend_schema(
        operation_id="snapshots_retrieve",
        summary="Show one snapshot",
        responses={200: SnapshotSerializer, **ERRORS},
    )
    def get(self, request: Request, db: str, name: str) -> Response:
        try:
            snapshot = service.get_snapshot(self.path, name)
        except service.SnapshotError as exc:
            raise snapshot_error(exc, "The snapshot cannot be read.") from None
        return Response(SnapshotSerializer(snapshot).data)

    @extend_schema(
        operation_id="snapshots_destroy",
        summary="Delete one snapshot",
        responses={204: OpenApiResponse(description="Deleted."), **ERRORS},
    )
    def delete(self, request: Request, db: str, name: str) -> Response:
        try:
            service.delete_snapshot(
                self.path, name, username=username_of(request), request=request._request
            )
        except service.SnapshotError as exc:
            raise snapshot_error(exc, "Nothing was deleted.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class SnapshotRestoreView(SnapshotAdminView):
    @extend_schema(
        operation_id="snapshots_restore",
        summary="Restore the database to a snapshot",
        description=(
            "Verifies the snapshot, holds the database alone (requests wait), takes a safety "
            "snapshot of the database as it is, then writes the snapshot into it. Tokens live "
            "in the database file: those created after the snapshot was taken are gone."
        ),
        request=None,
        responses={200: RestoreResultSerializer, **ERRORS},
    )
    def post(self, request: Request, db: str, name: str) -> Response:
        try:
            result = service.restore_snapshot(
                self.path, name, username=username_of(request), request=request._request
            )
        except service.SnapshotError as exc:
            raise snapshot_error(exc, "The database was not restored.") from None
        self._after_restore(request)
        data = {
            "restored": result.restored,
            "safety": result.safety,
            "carried_audit_entries": result.carried_audit_entries,
        }
        return Response(RestoreResultSerializer(data).data)

    def _after_restore(self, request: Request) -> None:
        """Re-point a browser session that works on the restored database, as the page does.

        The restored file has its own users: switching the session to it again (reason
        "restored") makes accounts verify its sign-in against the restored content. A
        token-only client has no session to re-point; its token was checked before the
        restore, and its next request is checked against the restored file.
        """
        django_request = request._request
        if session.selected_path(django_request) != self.path:
            return
        try:
            engine, _ = engines.validate_and_register(self.path)
        except (engines.DatabaseUnavailable, gate.GateClosed):
            # The session's next request finds out and falls back, as for any unusable file.
            return
        session.switch(django_request, engine, reason="restored")
