"""migrations/ of the URL's database: the plan (GET), and applying it (POST, its admins).

Works on a database that needs migration (`requires_up_to_date = False`), which every other
endpoint refuses with 409. Applying goes through the same service as the migration page
(migrating.service.migrate_database): the database's maintenance gate and the migration lock
beside the file, a pre-migration snapshot first, and that snapshot written back if any step
fails, so a failed migration loses nothing; the service records `database.migrate`.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from api import binding
from api.errors import ApiError
from api.permissions import ReadOrAdmin
from api.serializers import (
    ErrorBodySerializer,
    MigrationPlanSerializer,
    MigrationResultSerializer,
)
from api.views.admin import AuditedDenialMixin, username_of
from api.views.base import DatabaseView
from dbselect import protection
from migrating import service

# Seconds an apply waits for another migration of the same file (as the page: the service's
# default), then answers 409.
LOCK_TIMEOUT = 60.0


class MigrationsView(AuditedDenialMixin, DatabaseView):
    """Any signed-in user of the database reads the plan; its admins apply it."""

    requires_up_to_date = False
    permission_classes = [ReadOrAdmin]
    denied_action = "database.migrate"

    @property
    def path(self) -> str:
        assert self.database is not None
        return self.database.engine.path

    def denied_entry(self, request: Request) -> dict[str, str]:
        # As the migration page records a refused approval.
        return {"target": self.path, "detail": "not an administrator of this database"}

    @extend_schema(
        operation_id="migrations_plan",
        summary="The database's migration state and pending migrations",
        responses={200: MigrationPlanSerializer, 409: ErrorBodySerializer},
    )
    def get(self, request: Request, db: str) -> Response:
        try:
            info = service.plan_for(self.path)
        except service.MigrationRefused as exc:
            raise ApiError("migration_refused", str(exc), status.HTTP_409_CONFLICT) from None
        data = {"state": info.state.value, "pending": binding.migration_plan(info)}
        return Response(MigrationPlanSerializer(data).data)

    @extend_schema(
        operation_id="migrations_apply",
        summary="Apply the pending migrations (snapshot first, restored on failure)",
        description=(
            "Takes a snapshot, applies every pending migration and answers what was applied. "
            "409: the database cannot be migrated, or another migration of it is running "
            "(Retry-After). 422: a migration failed; detail.restored tells whether the "
            "database was written back from detail.snapshot (then nothing was lost)."
        ),
        request=None,
        responses={
            200: MigrationResultSerializer,
            403: ErrorBodySerializer,
            409: ErrorBodySerializer,
            422: ErrorBodySerializer,
            423: ErrorBodySerializer,
        },
    )
    def post(self, request: Request, db: str) -> Response:
        assert self.database is not None
        # This request's writes pass dbselect.protection's guard (api.views.base): on a
        # protected database without a maintenance grant the migration's first statement
        # would be refused half way. Refuse it before anything is snapshotted instead.
        if not protection.WriteGuard(self.database.alias, request.user).allowed():
            raise protection.DatabaseProtected("MIGRATE")
        try:
            outcome = service.migrate_database(
                self.path,
                author=username_of(request),
                lock_timeout=LOCK_TIMEOUT,
                request=request._request,
            )
        except service.MigrationRefused as exc:
            raise ApiError("migration_refused", str(exc), status.HTTP_409_CONFLICT) from None
        except service.MigrationInProgress as exc:
            raise ApiError(
                "migration_in_progress", str(exc), status.HTTP_409_CONFLICT, retry_after=True
            ) from None
        except service.MigrationFailed as exc:
            snapshot = exc.snapshot.name if exc.snapshot else None
            raise ApiError(
                "migration_failed",
                f"Migration failed: {exc.reason}. {exc.outcome}",
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                detail={"reason": exc.reason, "snapshot": snapshot, "restored": exc.restored},
            ) from None
        data = {
            "already_current": outcome.already_current,
            "applied": [{"app": app, "name": name} for app, name in outcome.applied],
            "snapshot": outcome.snapshot.name if outcome.snapshot else None,
        }
        return Response(MigrationResultSerializer(data).data)
