from django.urls import path

from migrating import views

app_name = "migrating"

urlpatterns = [
    # Under /select-db (the selector's own prefix): reachable before a database is selected.
    path("select-db/migrate", views.apply_migrations, name="apply"),
]
