"""/api/: v1 of the REST API, its OpenAPI schema and its docs (served from local files)."""

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from api.views import (
    attachments,
    catalog,
    databases,
    domain,
    engines,
    migrations,
    snapshots,
    tokens,
)

app_name = "api"

router = SimpleRouter(trailing_slash="/?")
router.register("companies", domain.CompanyViewSet, basename="company")
router.register("projects", domain.ProjectViewSet, basename="project")
router.register("attachments", attachments.AttachmentViewSet, basename="attachment")

database_urls = [
    path("auth/token", tokens.TokenView.as_view(), name="token"),
    # Admins of the URL's database.
    path("snapshots/", snapshots.SnapshotListView.as_view(), name="snapshots"),
    path("snapshots/<str:name>", snapshots.SnapshotDetailView.as_view(), name="snapshot"),
    path(
        "snapshots/<str:name>/restore",
        snapshots.SnapshotRestoreView.as_view(),
        name="snapshot-restore",
    ),
    path("migrations/", migrations.MigrationsView.as_view(), name="migrations"),
    # Operators (server-wide).
    path("engines/", engines.EngineListView.as_view(), name="engines"),
    path("engines/dispose", engines.EngineDisposeView.as_view(), name="engines-dispose"),
    path(
        "engines/dispose-idle", engines.EngineDisposeIdleView.as_view(), name="engines-dispose-idle"
    ),
    # Operators: new databases of the catalog (provisioning), built as background jobs.
    path("databases/", databases.DatabaseCreateView.as_view(), name="databases"),
    path("databases/seeds", databases.SeedListView.as_view(), name="database-seeds"),
    path(
        "databases/<str:label>",
        databases.DatabaseProgressView.as_view(),
        name="database-progress",
    ),
    path(
        "databases/<str:label>/rebuild",
        databases.DatabaseRebuildView.as_view(),
        name="database-rebuild",
    ),
    path(
        "databases/<str:label>/discard",
        databases.DatabaseDiscardView.as_view(),
        name="database-discard",
    ),
    path("", include(router.urls)),
]

urlpatterns = [
    path("v1/databases/", catalog.CatalogView.as_view(), name="catalog"),
    path("v1/databases/<str:db>/", include(database_urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file (the CSP allows no inline script);
    # Swagger UI sets inline styles and data: icons, allowed on this page alone (never scripts).
    path(
        "docs/",
        csp_update({"style-src": [UNSAFE_INLINE], "img-src": ["data:"]})(
            SpectacularSwaggerSplitView.as_view(url_name="api:schema")
        ),
        name="docs",
    ),
]
