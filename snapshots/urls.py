from django.urls import path

from snapshots import views

app_name = "snapshots"

urlpatterns = [
    path("snapshots/", views.snapshot_list, name="list"),
    path("snapshots/create", views.snapshot_create, name="create"),
    path("snapshots/retention", views.retention_settings, name="retention"),
    path("snapshots/prune", views.snapshot_prune, name="prune"),
    path("snapshots/<str:name>/download", views.snapshot_download, name="download"),
    path("snapshots/<str:name>/delete", views.snapshot_delete, name="delete"),
    path("snapshots/<str:name>/restore", views.snapshot_restore, name="restore"),
]
