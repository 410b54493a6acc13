"""System checks report misconfiguration with exact ids."""

from __future__ import annotations

from django.core.checks import Error, Warning

from dbselect import checks

MW = "dbselect.middleware.DatabaseSelectionMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"


def test_project_configuration_passes():
    assert checks.check_router() == []
    assert checks.check_middleware() == []


def test_missing_router_is_an_error(settings):
    settings.DATABASE_ROUTERS = []
    assert checks.check_router() == [
        Error(
            "'dbselect.routers.SessionRouter' is missing from DATABASE_ROUTERS.",
            hint="Without it every query goes to the default database, not the session's.",
            id="dbselect.E001",
        )
    ]


def test_middleware_after_authentication_is_an_error(settings):
    settings.MIDDLEWARE = [SESSION, AUTH, MW]
    [error] = checks.check_middleware()
    assert error.id == "dbselect.E002"
    assert error.msg == f"'{MW}' is in the wrong place."


def test_middleware_before_sessions_is_an_error(settings):
    settings.MIDDLEWARE = [MW, SESSION, AUTH]
    assert [e.id for e in checks.check_middleware()] == ["dbselect.E002"]


def test_missing_middleware_is_an_error(settings):
    settings.MIDDLEWARE = [SESSION, AUTH]
    assert [e.msg for e in checks.check_middleware()] == [f"'{MW}' is missing from MIDDLEWARE."]


def test_unrestricted_paths_warn_under_deploy(settings):
    settings.DBSELECT = {**settings.DBSELECT, "ALLOWED_ROOTS": []}
    assert checks.check_allowed_roots() == [
        Warning(
            "Any file path on this server can be selected and browsed.",
            hint="Set DBSELECT_ALLOWED_ROOTS to the folders that hold NukeWorks databases "
            "(colon-separated).",
            id="dbselect.W001",
        )
    ]
    settings.DBSELECT = {**settings.DBSELECT, "ALLOWED_ROOTS": ["/srv/nukeworks"]}
    assert checks.check_allowed_roots() == []
