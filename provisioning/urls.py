from django.urls import path

from inspection import views as inspection_views
from provisioning import database_views, views

app_name = "provisioning"

# Under /select-db (the selector's own prefix): reachable before a database is selected.
urlpatterns = [
    path("select-db/new", views.new_database, name="new"),
    path("select-db/preparing/<str:label>", views.progress_page, name="progress"),
    path("select-db/preparing/<str:label>/status", views.status, name="status"),
    path("select-db/preparing/<str:label>/rebuild", views.rebuild, name="rebuild"),
    path("select-db/preparing/<str:label>/discard", views.discard, name="discard"),
    # The session's database as a whole: details, duplicate, restore a snapshot as new, archive.
    path("database/", database_views.details, name="details"),
    path("database/duplicate", database_views.duplicate, name="duplicate"),
    path(
        "database/snapshots/<str:name>/restore-as-new",
        database_views.restore_as_new,
        name="restore-as-new",
    ),
    path("database/archive", database_views.archive, name="archive"),
    # Its full check: queued by the page, run by the queue's worker (the inspection app).
    path("database/check", inspection_views.start_check, name="check"),
    path("database/check/status", inspection_views.check_status, name="check-status"),
]
