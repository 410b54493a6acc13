"""The selector pages: GET/POST /select-db and the browse endpoint."""

from __future__ import annotations

import os
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods

from dbselect import scanner, selector_cache, services, session
from dbselect.browse import list_folder
from dbselect.conf import get_config
from dbselect.middleware import fallback_banner
from dbselect.paths import PathRejected, bounded


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


def _reachable(path: str) -> bool:
    try:
        return bool(path) and bounded(lambda: os.path.isfile(path), timeout=1.0)
    except PathRejected:
        return False


def _last_used(request: HttpRequest, cache: dict) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        saved = getattr(user, "last_db_path", None)
        if saved and _reachable(saved):
            return saved
    default = cache.get("global_default_path", "")
    return default if default and _reachable(default) else ""


def _selector_context(request: HttpRequest, **extra: object) -> dict:
    cache = selector_cache.load()
    databases = scanner.scan()
    known = {db.path for db in databases}
    recent = [p for p in cache["recent_paths"] if p not in known]
    last_used = _last_used(request, cache)
    current = session.selected_path(request)
    return {
        "databases": databases,
        "recent_paths": recent,
        "last_used": last_used,
        "current_path": current,
        "checked_path": request.POST.get("choice") or current or last_used,
        "browse_start": cache["last_browsed_dir"] or str(get_config()["DATABASES_DIR"]),
        "next": _safe_next(request),
        **extra,
    }


@require_http_methods(["GET", "POST"])
def select_database(request: HttpRequest) -> HttpResponse:
    """Show the selector (GET) or switch the session to the chosen database (POST)."""
    if request.method == "GET":
        return render(request, "dbselect/select.html", _selector_context(request))
    typed = request.POST.get("path", "")
    raw = typed if typed.strip() else request.POST.get("choice", "")
    result = services.select(request, raw, display_name=request.POST.get("display_name", ""))
    if result.ok:
        for warning in result.warnings:
            messages.warning(request, warning)
        messages.success(request, f"Now working on {session.selected_name(request)}.")
        target = _safe_next(request)
        if not request.user.is_authenticated:
            login = reverse("accounts:login")
            if target:
                login += "?" + urlencode({"next": target})
            return HttpResponseRedirect(login)
        return HttpResponseRedirect(target or reverse("companies:home"))
    current = session.selected_path(request)
    if current:
        messages.error(
            request, fallback_banner(session.selected_name(request) or current, result.reason or "")
        )
    else:
        messages.error(request, f"The database could not be opened. Reason: {result.reason}")
    context = _selector_context(request, typed_path=typed, refused=result)
    return render(request, "dbselect/select.html", context, status=400)


@require_GET
def browse(request: HttpRequest) -> JsonResponse:
    """Return folders and database files under ?dir= as JSON for the browse widget."""
    folder = request.GET.get("dir") or selector_cache.load()["last_browsed_dir"]
    folder = folder or str(get_config()["DATABASES_DIR"])
    try:
        return JsonResponse(list_folder(folder))
    except PathRejected as exc:
        return JsonResponse({"error": str(exc)}, status=400)


def healthz(request: HttpRequest) -> JsonResponse:
    """Answer load balancers without touching any database."""
    return JsonResponse({"status": "ok"})
