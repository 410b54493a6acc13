from django.urls import path

from nukeworks.attachments import views

app_name = "attachments"

urlpatterns = [
    path(
        "companies/<int:pk>/attachments/",
        views.upload,
        {"kind": "company"},
        name="company-upload",
    ),
    path(
        "projects/<int:pk>/attachments/",
        views.upload,
        {"kind": "project"},
        name="project-upload",
    ),
    path("attachments/<int:pk>/download", views.download, name="download"),
    path("attachments/<int:pk>/delete", views.delete, name="delete"),
]
