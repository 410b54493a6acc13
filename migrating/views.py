"""POST /select-db/migrate: an operator approved the plan the selector showed; apply it.

The selector (dbselect) shows the plan and posts here (DBSELECT["MIGRATE_URL"]); every answer
that is not a redirect is the selector page again, rendered by dbselect.views.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.http import require_POST

from audit import log as audit_log
from dbselect import selection
from dbselect.views import home_url, may_migrate, refused, render_selector, safe_next
from migrating import service


@require_POST
def apply_migrations(request: HttpRequest) -> HttpResponse:
    """Snapshot, migrate and switch to a database after an operator's approval."""
    raw = request.POST.get("path", "")
    if not may_migrate(request):
        audit_log.record(
            "database.migrate",
            target=str(raw)[:1000],
            outcome="denied",
            request=request,
            detail="not an operator",
        )
        messages.error(request, "Only an administrator can apply migrations.")
        return render_selector(request, status=403)
    try:
        path, _ = selection.check_path(raw)
        outcome = service.migrate_database(
            path, author=request.user.get_username(), request=request
        )
    except selection.ValidationFailed as exc:
        return refused(request, exc.reason)
    except (service.MigrationRefused, service.MigrationInProgress) as exc:
        return refused(request, str(exc), status=409)
    except service.MigrationFailed as exc:
        # 422: the request was understood and handled, but the migration could not be done.
        return refused(request, f"Migration failed: {exc.reason}. {exc.outcome}", status=422)
    if outcome.already_current:
        messages.info(request, "This database was already brought up to date by someone else.")
    else:
        messages.success(
            request,
            f"Applied {len(outcome.applied)} migration(s); "
            f"snapshot taken first: {outcome.snapshot.name if outcome.snapshot else '-'}.",
        )
    result = selection.select(request, path, display_name=request.POST.get("display_name", ""))
    if not result.ok:
        return refused(request, result.reason or "")
    # Warnings of the selection itself, e.g. a rename refused (this admin is not signed in there).
    for warning in result.warnings:
        messages.warning(request, warning)
    return HttpResponseRedirect(safe_next(request) or home_url())
