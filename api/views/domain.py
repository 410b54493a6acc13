"""companies/ and projects/ of the URL's database: list, create, retrieve, update, delete."""

from __future__ import annotations

from rest_framework import filters, viewsets

from api.pagination import KeysetPagination
from api.serializers import CompanySerializer, ProjectSerializer
from api.views.base import DatabaseBoundMixin
from nukeworks.companies.models import Company, Project


class CompanyListing:
    """How companies are listed: serializer, keyset pages, search and ordering.

    Shared by the API's view and bench/static_api.py's baseline, so both do the same work.
    """

    serializer_class = CompanySerializer
    pagination_class = KeysetPagination
    filter_backends = [filters.SearchFilter, filters.OrderingFilter]
    search_fields = ["name", "country"]
    # Unique columns only: keyset pages need a total order.
    ordering_fields = ["id", "name"]
    ordering = ["id"]

    def get_queryset(self):
        return Company.objects.all()


class CompanyViewSet(DatabaseBoundMixin, CompanyListing, viewsets.ModelViewSet):
    """Companies. Search `?search=` (name, country); order `?ordering=name|-name|id|-id`."""


class ProjectViewSet(DatabaseBoundMixin, viewsets.ModelViewSet):
    """Projects. Search `?search=` (name, status); order `?ordering=id|-id`."""

    serializer_class = ProjectSerializer
    pagination_class = KeysetPagination
    filter_backends = [filters.SearchFilter, filters.OrderingFilter]
    search_fields = ["name", "status"]
    ordering_fields = ["id"]
    ordering = ["id"]

    def get_queryset(self):
        return Project.objects.all()
