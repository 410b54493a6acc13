"""URLs of the static API baseline in bench_api.py: the same company list, no selection.

One plain DRF list view on the `default` database (bench/static_api_settings.py points it at
the benchmark's file): the same serializer, keyset pagination, filters, knox token
authentication and throttles as /api/v1/databases/{db}/companies/, without binding a database
from the URL.
"""

from django.urls import path
from rest_framework import generics

from api.authentication import DatabaseTokenAuthentication
from api.views.domain import CompanyListing
from nukeworks.urls import urlpatterns as project_urls


class StaticCompanyList(CompanyListing, generics.ListAPIView):
    authentication_classes = [DatabaseTokenAuthentication]


# The project's own URLs (health check included) plus the static list.
urlpatterns = [path("api/v1/static/companies/", StaticCompanyList.as_view()), *project_urls]
