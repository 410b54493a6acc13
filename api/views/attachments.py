"""attachments/ of the URL's database: list, upload (multipart), retrieve, delete, content."""

from __future__ import annotations

from django.http import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from api.errors import ApiError
from api.pagination import KeysetPagination
from api.serializers import AttachmentSerializer, AttachmentUploadSerializer
from api.views.base import DatabaseBoundMixin
from nukeworks.attachments import service
from nukeworks.attachments.models import Attachment
from nukeworks.attachments.views import download_response

_OWNER_FILTERS = [
    OpenApiParameter("company", int, description="Only the attachments of this company."),
    OpenApiParameter("project", int, description="Only the attachments of this project."),
]


def _positive(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ApiError("invalid", f"`{name}` must be a positive id.", detail={name: value})
    return number


class AttachmentViewSet(
    DatabaseBoundMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Documents of companies and projects. The bytes are served by `{id}/content`, always as a
    download (`Content-Disposition: attachment`); equal content is stored once."""

    serializer_class = AttachmentSerializer
    pagination_class = KeysetPagination
    parser_classes = [MultiPartParser, FormParser]
    ordering = ["id"]

    def get_queryset(self):
        rows = Attachment.objects.order_by("id")
        if self.action == "list":
            company = _positive(self.request.query_params.get("company"), "company")
            project = _positive(self.request.query_params.get("project"), "project")
            if company is not None:
                rows = rows.filter(company_id=company)
            if project is not None:
                rows = rows.filter(project_id=project)
        return rows

    @extend_schema(parameters=_OWNER_FILTERS)
    def list(self, request: Request, *args, **kwargs) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": AttachmentUploadSerializer},
        responses={201: AttachmentSerializer},
    )
    def create(self, request: Request, *args, **kwargs) -> Response:
        """Attach the uploaded `file` to `company` or `project`."""
        upload = AttachmentUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        owner = upload.validated_data.get("company") or upload.validated_data.get("project")
        try:
            attachment = service.add(
                owner, upload.validated_data["file"], request=request._request, user=request.user
            )
        except service.PayloadTooLarge as exc:
            raise ApiError(
                "payload_too_large",
                str(exc),
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                detail={"limit": exc.limit},
            ) from None
        except service.EmptyPayload as exc:
            raise ApiError("empty_file", str(exc)) from None
        return Response(AttachmentSerializer(attachment).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Attachment) -> None:
        service.delete(instance, request=self.request._request, user=self.request.user)

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The attachment's bytes, as a download."
            )
        }
    )
    @action(detail=True, methods=["get"])
    def content(self, request: Request, *args, **kwargs) -> HttpResponseBase:
        """The attachment's bytes (404 `file_missing` when its file is not in the store)."""
        attachment = self.get_object()
        try:
            content = service.open_content(attachment)
        except service.AttachmentMissing:
            raise ApiError(
                "file_missing",
                "The file of this attachment is missing from the store.",
                status.HTTP_404_NOT_FOUND,
            ) from None
        return download_response(attachment, content)
