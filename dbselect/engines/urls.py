"""URLs of the engines page, mounted at /admin/engines/ (before Django's admin)."""

from django.urls import path

from dbselect.engines import views as engine_views

app_name = "dbselect-engines"

urlpatterns = [
    path("", engine_views.engine_list, name="list"),
    path("data", engine_views.engine_data, name="data"),
    path("dispose", engine_views.dispose, name="dispose"),
    path("dispose-idle", engine_views.dispose_idle, name="dispose-idle"),
]
