"""URLs of NukeWorks."""

from functools import cache
from pathlib import Path

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

from accounts.views import AdminLoginView
from dbselect.views import healthz
from nukeworks.deployment.health import ReadinessView

ROBOTS_TXT = "User-agent: *\nDisallow: /\n"


@cache
def _favicon_bytes() -> bytes:
    return (Path(settings.BASE_DIR) / "static" / "favicon.ico").read_bytes()


@require_safe
@cache_control(max_age=86400, public=True)
def robots_txt(request: HttpRequest) -> HttpResponse:
    """Answer crawlers: nothing here is for indexing (no database selection needed)."""
    return HttpResponse(ROBOTS_TXT, content_type="text/plain; charset=utf-8")


@require_safe
@cache_control(max_age=86400, public=True)
def favicon_ico(request: HttpRequest) -> HttpResponse:
    """Serve the favicon at the root, where browsers ask for it without a <link>."""
    return HttpResponse(_favicon_bytes(), content_type="image/x-icon")


# Admin branding; base_site.html adds the current database to every admin page's header.
admin.site.site_header = "NukeWorks administration"
admin.site.site_title = "NukeWorks administration"
admin.site.index_title = "Site administration"

urlpatterns = [
    # Answered directly, before any database is selected (dbselect's EXEMPT_PREFIXES).
    path("robots.txt", robots_txt, name="robots-txt"),
    path("favicon.ico", favicon_ico, name="favicon"),
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
