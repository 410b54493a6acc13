from django.urls import path

from bundles import views

app_name = "bundles"

urlpatterns = [
    path("bundles/", views.bundle_page, name="page"),
    path("bundles/export", views.bundle_export, name="export"),
    path("bundles/import", views.bundle_import, name="import"),
]
