"""POST /select-db/migrate: an operator approved the plan the selector showed; apply it.

The selector (dbselect) shows the plan and posts here (DBSELECT["MIGRATE_URL"]); every answer
that is not a redirect is the selector page again, rendered by dbselect.views.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from audit import log as audit_log
from dbselect import permissions, selection, session
from dbselect.views import home_url, may_migrate, refused, render_selector, safe_next
from migrating import service


def refusal_message(request: HttpRequest) -> str:
    """Tell a visitor who may not migrate what to do: sign in as an operator's administrator.

    Migrating a file is an operator's power (dbselect.views.may_migrate): an administrator
    signed in to one of the operator databases. A signed-out visitor is told so, with a link
    to sign in when the session already works on an operator database.
    """
    operators = permissions.operator_databases()
    names = ", ".join(operators) or "none configured"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return (
            f"You are signed in as {user.get_username()}, who may not apply migrations: sign in "
            f"as an administrator of an operator database ({names}), then select this "
            "database again to apply its migrations."
        )
    current = session.selected_path(request)
    if current and current in operators:
        login = reverse("accounts:login") + "?" + urlencode({"next": reverse("dbselect:select")})
        return format_html(
            'You are not signed in. <a href="{}">Sign in as an administrator</a> of this '
            "operator database, then select the database again to apply its migrations.",
            login,
        )
    return (
        "You are not signed in. Sign in as an administrator of an operator database "
        f"({names}): select it below, sign in, then select this database again to apply "
        "its migrations."
    )


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
        messages.error(request, refusal_message(request))
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
        count = len(outcome.applied)
        applied = ngettext("Applied %(n)d migration", "Applied %(n)d migrations", count) % {
            "n": count
        }
        messages.success(
            request,
            f"{applied}; snapshot taken first: "
            f"{outcome.snapshot.name if outcome.snapshot else '-'}.",
        )
    result = selection.select(request, path, display_name=request.POST.get("display_name", ""))
    if not result.ok:
        return refused(request, result.reason or "")
    # Warnings of the selection itself, e.g. a rename refused (this admin is not signed in there).
    for warning in result.warnings:
        messages.warning(request, warning)
    return HttpResponseRedirect(safe_next(request) or home_url())
