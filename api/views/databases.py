"""databases/: create a new database of the catalog, follow, rebuild or discard it (operators).

    POST /api/v1/databases/{db}/databases/                 queue a new database -> 202
    GET  /api/v1/databases/{db}/databases/seeds            the seed packages one can use
    GET  /api/v1/databases/{db}/databases/{label}          where its build stands
    POST /api/v1/databases/{db}/databases/{label}/rebuild  queue it again (never became ready)
    POST /api/v1/databases/{db}/databases/{label}/discard  move it aside (never became ready)

Creating databases is a server-wide power, so `{db}` is an operator database and the caller
an admin of it (api.permissions.IsOperator: an admin token of that database, or the browser
session's operator sign-in on `current`), as for engines/. The same service as the selector's
"New database…" page (provisioning.service): the build is a job of the task queue, the answer
202 with the job and where to follow it; the same audit entries.
"""

from __future__ import annotations

from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import ApiError
from api.permissions import IsOperator
from api.serializers import (
    DatabaseCreateSerializer,
    DatabaseJobSerializer,
    DiscardedSerializer,
    ErrorBodySerializer,
    PreparingProgressSerializer,
    SeedPackageSerializer,
)
from api.views.admin import AuditedDenialMixin, username_of
from api.views.base import DatabaseView
from provisioning import progress, service

ERRORS = {403: ErrorBodySerializer, 404: ErrorBodySerializer, 409: ErrorBodySerializer}


def provisioning_error(exc: service.ProvisioningError) -> ApiError:
    """Return the API answer to a refused request (the service's code and status)."""
    return ApiError(exc.code, exc.message, exc.status, retry_after=exc.status == 503)


class ProvisioningView(AuditedDenialMixin, DatabaseView):
    """Operators only, whatever operator database the URL names."""

    permission_classes = [IsOperator]
    denied_action = "database.create"

    def progress_url(self, request: Request, db: str, label: str) -> str:
        return request.build_absolute_uri(
            reverse("api:database-progress", kwargs={"db": db, "label": label})
        )

    def job_answer(self, request: Request, db: str, job: service.Job) -> Response:
        data = {
            "label": job.label,
            "job": job.job,
            "state": progress.status(job.label).state,
            "progress_url": self.progress_url(request, db, job.label),
            "page_url": request.build_absolute_uri(
                reverse("provisioning:progress", args=[job.label])
            ),
        }
        return Response(DatabaseJobSerializer(data).data, status=status.HTTP_202_ACCEPTED)


class DatabaseCreateView(ProvisioningView):
    @extend_schema(
        operation_id="databases_create",
        summary="Create a new database from a seed package, as a background job (operators)",
        description=(
            "Claims the label, records what to build and queues the job: 202 with the job id "
            "and `progress_url`. The database appears in the catalog as `preparing` and is "
            "served once ready; its own URLs answer 503 with Retry-After meanwhile. 409: the "
            "label exists or is being prepared; 400: invalid label, seed or admin."
        ),
        request=DatabaseCreateSerializer,
        responses={202: DatabaseJobSerializer, 400: ErrorBodySerializer, **ERRORS},
    )
    def post(self, request: Request, db: str) -> Response:
        form = DatabaseCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        username = encoded = None
        if data["copy_my_login"]:
            username, encoded = request.user.get_username(), request.user.password
        elif data["admin"]:
            username = data["admin"]["username"]
            try:
                validate_password(data["admin"]["password"])
            except ValidationError as exc:
                raise ApiError(
                    "invalid", "The request has invalid fields.", detail={"admin": exc.messages}
                ) from None
            encoded = make_password(data["admin"]["password"])
        try:
            job = service.request_build(
                data["label"],
                seed=data["seed"],
                display_name=data.get("display_name", ""),
                postgres_like=data.get("postgres_like") or None,
                admin_username=username,
                admin_password_hash=encoded,
                requested_by=username_of(request),
                via="api",
                request=request._request,
            )
        except service.ProvisioningError as exc:
            raise provisioning_error(exc) from None
        return self.job_answer(request, db, job)


class SeedListView(ProvisioningView):
    @extend_schema(
        operation_id="databases_seeds",
        summary="The seed packages a new database can be made from (operators)",
        responses={200: SeedPackageSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, db: str) -> Response:
        seeds = [
            {"ref": p.ref, "name": p.name, "version": str(p.version), "description": p.description}
            for p in service.seed_choices()
        ]
        return Response(SeedPackageSerializer(seeds, many=True).data)


def _status(label: str) -> progress.Status:
    try:
        service.check_label(label)
    except service.ProvisioningError:
        raise ApiError("unknown_database", "No such database.", status.HTTP_404_NOT_FOUND) from None
    current = progress.status(label)
    if current.state == progress.MISSING:
        raise ApiError("unknown_database", current.message, status.HTTP_404_NOT_FOUND)
    return current


class DatabaseProgressView(ProvisioningView):
    @extend_schema(
        operation_id="databases_progress",
        summary="Where the build of a database stands (operators)",
        responses={200: PreparingProgressSerializer, **ERRORS},
    )
    def get(self, request: Request, db: str, label: str) -> Response:
        return Response(PreparingProgressSerializer(_status(label).public()).data)


class DatabaseRebuildView(ProvisioningView):
    @extend_schema(
        operation_id="databases_rebuild",
        summary="Queue the build of a database that never became ready again (operators)",
        description=(
            "As it was first requested; a file left in place that is not ready is moved to "
            "databases/.discarded/ first. 409 while it is being built or once it is ready."
        ),
        request=None,
        responses={202: DatabaseJobSerializer, **ERRORS},
    )
    def post(self, request: Request, db: str, label: str) -> Response:
        _status(label)
        try:
            job = service.retry(
                label, requested_by=username_of(request), via="api", request=request._request
            )
        except service.ProvisioningError as exc:
            raise provisioning_error(exc) from None
        return self.job_answer(request, db, job)


class DatabaseDiscardView(ProvisioningView):
    denied_action = "database.discard"

    @extend_schema(
        operation_id="databases_discard",
        summary="Move a database that never became ready aside (operators); nothing is deleted",
        request=None,
        responses={200: DiscardedSerializer, **ERRORS},
    )
    def post(self, request: Request, db: str, label: str) -> Response:
        _status(label)
        try:
            target = service.discard(
                label, requested_by=username_of(request), via="api", request=request._request
            )
        except service.ProvisioningError as exc:
            raise provisioning_error(exc) from None
        return Response(DiscardedSerializer({"label": label, "moved_to": str(target)}).data)
