from django.urls import path

from provisioning import views

app_name = "provisioning"

# Under /select-db (the selector's own prefix): reachable before a database is selected.
urlpatterns = [
    path("select-db/new", views.new_database, name="new"),
    path("select-db/preparing/<str:label>", views.progress_page, name="progress"),
    path("select-db/preparing/<str:label>/status", views.status, name="status"),
    path("select-db/preparing/<str:label>/rebuild", views.rebuild, name="rebuild"),
    path("select-db/preparing/<str:label>/discard", views.discard, name="discard"),
]
