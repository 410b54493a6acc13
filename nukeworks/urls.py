"""URLs of NukeWorks."""

from django.contrib import admin
from django.urls import include, path

from accounts.views import AdminLoginView
from dbselect.views import healthz
from nukeworks.deployment.health import ReadinessView

urlpatterns = [
    path("", include("dbselect.urls")),
    path("", include("accounts.urls")),
    # Liveness (the process answers) and readiness (it can do its work: /readyz's checks).
    path("healthz", healthz, name="healthz"),
    path("readyz", ReadinessView.as_view(), name="readyz"),
    # Prometheus metrics per database: admins, a bearer token or an allowed address (metrics/).
    path("", include("metrics.urls")),
    path("api/", include("api.urls")),
    # Before Django's admin, which would otherwise answer /admin/engines/ with its 404.
    path("admin/engines/", include("dbselect.engines.urls")),
    # The admin's sign-in page, under the app's rate limit (one limiter for every sign-in form).
    path("admin/login/", AdminLoginView.as_view(), name="admin-login"),
    path("admin/", admin.site.urls),
    path("", include("snapshots.urls")),
    path("", include("migrating.urls")),
    path("", include("bundles.urls")),
    path("", include("provisioning.urls")),
    path("", include("nukeworks.attachments.urls")),
    path("", include("nukeworks.companies.urls")),
]

# JSON in the API's one error shape under /api/, the project's pages everywhere else.
handler404 = "api.errors.not_found"
handler500 = "api.errors.server_error"
