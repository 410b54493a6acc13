"""Who may manage snapshots: the admins of the database the session works on."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from audit import log as audit_log
from dbselect import session

DENIED = "Only administrators of this database can manage its snapshots."


def is_snapshot_admin(request: HttpRequest) -> bool:
    """Return True if the user, loaded from the session's own database, is an admin there."""
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and getattr(user, "is_admin", False))


def admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer 403 (never a redirect to a login form) to anonymous visitors and non-admins."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not is_snapshot_admin(request):
            if request.method == "POST":
                audit_log.record(
                    "snapshot.denied",
                    target=request.path,
                    outcome="denied",
                    detail=f"{request.method} {request.path}",
                    request=request,
                )
            raise PermissionDenied(DENIED)
        if not session.selected_path(request):
            # The selection middleware sends such sessions to /select-db before this runs.
            raise PermissionDenied("No database is selected.")
        return view(request, *args, **kwargs)

    return wrapped
