from django.urls import path

from dbselect import views
from dbselect.catalog import views as catalog_views
from dbselect.engines import views as engine_views
from dbselect.protection import views as protection_views

app_name = "dbselect"

urlpatterns = [
    path("select-db", views.select_database, name="select"),
    path("select-db/browse", views.browse, name="browse"),
    path("select-db/forget", views.forget_recent, name="forget"),
    # Operators: the PostgreSQL databases sessions may select (dbselect.catalog).
    path("catalog/", catalog_views.catalog_page, name="catalog"),
    path("catalog/<str:label>/remove", catalog_views.remove_entry, name="catalog-remove"),
    path("database/protection", protection_views.protection_page, name="protection"),
    path("database/slow-queries", engine_views.slow_query_list, name="slow-queries"),
]
