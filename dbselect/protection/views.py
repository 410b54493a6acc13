"""The protection page of the current database: protect it, and maintenance mode (admins)."""

from __future__ import annotations

import time

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from audit import log as audit_log
from dbselect import protection, session, state
from dbselect.permissions import admin_required

# The maintenance grant this session switched on, for the banner: {"path", "until"}.
BANNER_KEY = "maintenance_banner"
DENIED = "Only an administrator of this database can change its protection."


def _alias(request: HttpRequest) -> str:
    alias = state.get_active_alias()
    if alias is None:
        raise PermissionDenied(DENIED)
    return alias


@require_http_methods(["GET", "POST"])
@admin_required(audit_action="protection.change_denied", message=DENIED)
def protection_page(request: HttpRequest) -> HttpResponse:
    """Show whether the database is protected; POST: protect, unprotect, start/end maintenance."""
    alias = _alias(request)
    user = request.user
    if request.method == "POST":
        action = request.POST.get("action", "")
        target = session.selected_path(request) or ""
        if action in ("protect", "unprotect"):
            protection.set_protected(alias, action == "protect")
            messages.success(
                request,
                "This database is protected: every write is refused until an administrator "
                "switches on maintenance mode."
                if action == "protect"
                else "This database is no longer protected.",
            )
            audit_log.record(f"protection.{action}", target=target, request=request)
        elif action == "maintenance-on":
            try:
                minutes = int(request.POST.get("minutes", "30"))
            except ValueError:
                minutes = 30
            expiry = protection.start_maintenance(alias, user.pk, minutes * 60)
            request.session[BANNER_KEY] = {"path": target, "until": expiry}
            until = time.strftime("%H:%M:%S", time.localtime(expiry))
            messages.warning(request, f"Maintenance mode is on for you until {until}.")
            audit_log.record(
                "protection.maintenance_on",
                target=target,
                request=request,
                detail=f"until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(expiry))}",
            )
        elif action == "maintenance-off":
            protection.end_maintenance(alias, user.pk)
            request.session.pop(BANNER_KEY, None)
            messages.info(request, "Maintenance mode is off.")
            audit_log.record("protection.maintenance_off", target=target, request=request)
        else:
            messages.error(request, "Unknown action; nothing was changed.")
        return HttpResponseRedirect(reverse("dbselect:protection"))
    expiry = protection.grant_expiry(alias, user.pk)
    return render(
        request,
        "dbselect/protection.html",
        {
            "protected": protection.is_protected(alias),
            "maintenance_until": time.strftime("%H:%M:%S", time.localtime(expiry))
            if expiry
            else None,
            "max_minutes": protection.MAX_GRANT_SECONDS // 60,
        },
    )


def maintenance_banner(request: HttpRequest) -> dict[str, object]:
    """Template context: the end of the maintenance grant this session switched on.

    Read from the session (no query on every page); the grant itself lives in the database
    and is what the write guard checks.
    """
    session_data = getattr(request, "session", None)
    grant = session_data.get(BANNER_KEY) if session_data is not None else None
    if not grant or grant.get("path") != session.selected_path(request):
        return {}
    if float(grant.get("until", 0)) <= time.time():
        return {}
    return {"maintenance_until": time.strftime("%H:%M:%S", time.localtime(grant["until"]))}
