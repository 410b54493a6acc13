"""The selector pages: GET/POST /select-db and the browse endpoint.

Other apps that answer from the selector page (the migrating app's apply view) render it
through `render_selector` and `refused`, and ask `may_migrate`, `safe_next` and `home_url`;
dbselect itself names none of them: the approve form posts to DBSELECT["MIGRATE_URL"].
"""

from __future__ import annotations

import dataclasses
import os
import stat
from datetime import UTC, datetime
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dbselect import catalog, permissions, scanner, selection, selector_cache, session
from dbselect.conf import get_config
from dbselect.files.browse import list_folder
from dbselect.files.paths import PathRejected, bounded, check_allowed
from dbselect.files.schema import SchemaState, migration_names
from dbselect.recovery import fallback_banner

TEMPLATE = "dbselect/select.html"


def home_url() -> str:
    """Return where a session lands after selecting a database (DBSELECT["HOME_URL"])."""
    return resolve_url(get_config()["HOME_URL"])


def migrate_url() -> str | None:
    """Return where the approve form posts (DBSELECT["MIGRATE_URL"]), None when nowhere."""
    target = get_config()["MIGRATE_URL"]
    return resolve_url(target) if target else None


def create_url() -> str | None:
    """Return the page creating a database (DBSELECT["CREATE_URL"]), None when there is none."""
    target = get_config()["CREATE_URL"]
    return resolve_url(target) if target else None


def preparing_url(label: str) -> str | None:
    """Return the progress page of a database being prepared (DBSELECT["PREPARING_URL"])."""
    target = get_config()["PREPARING_URL"]
    return reverse(target, args=[label]) if target else None


def safe_next(request: HttpRequest) -> str:
    """Return the request's ?next= / next field when it stays on this site, else ""."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


def _reachable(path: str) -> bool:
    if catalog.is_target(path):
        return catalog.entry_for_target(path) is not None
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


def _browse_start(history: dict) -> str:
    """Return the folder the browse widget opens first: the last browsed one if allowed.

    Else databases/, else the first allowed root: never a folder the widget would refuse.
    """
    config = get_config()
    databases_dir = str(config["DATABASES_DIR"])
    candidates = [history["last_browsed_dir"], databases_dir, *map(str, config["ALLOWED_ROOTS"])]
    for folder in candidates:
        try:
            if folder:
                check_allowed(folder)
                return folder
        except PathRejected:
            continue
    return databases_dir


def _recent_entry(path: str) -> dict:
    """Return a recent path's row: missing or not, with its file's size and modification."""
    entry: dict = {"path": path, "missing": True, "size": None, "modified": None}
    if catalog.is_target(path):
        entry["missing"] = catalog.entry_for_target(path) is None
        return entry
    try:
        st = bounded(lambda: os.stat(path), timeout=1.0) if path else None
    except (OSError, PathRejected):
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        entry.update(missing=False, size=st.st_size, modified=_when(st.st_mtime))
    return entry


def _when(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, tz=UTC) if timestamp is not None else None


def _state_badge(db: scanner.ScannedDatabase) -> tuple[str, str]:
    """Return (badge class suffix, text) for a scanned database's schema state."""
    if db.preparing is not None:
        if db.preparing.get("state") in ("failed", "interrupted"):
            return "bad", f"preparation {db.preparing['state']}"
        done, total = db.preparing.get("done"), db.preparing.get("total")
        return "info", f"being prepared: {done}/{total}" if total else "being prepared"
    if db.not_ready:
        return "warn", "not ready"
    if db.error is not None or db.state is None or db.state is SchemaState.NOT_NUKEWORKS:
        return "bad", "invalid"
    return {
        SchemaState.UP_TO_DATE: ("ok", "up to date"),
        SchemaState.NEEDS_MIGRATION: ("warn", "needs migration"),
        SchemaState.NEWER: ("bad", "newer"),
    }[db.state]


def _count_text(db: scanner.ScannedDatabase) -> str:
    """Return "1 company", "10,000+ companies", "≈ 1,200 companies", or "" when unknown."""
    if db.count is None:
        return ""
    if db.count > scanner.COUNT_LIMIT and not db.count_estimated:
        return f"{scanner.COUNT_LIMIT:,}+ companies"
    noun = "company" if db.count == 1 else "companies"
    return f"{'≈ ' if db.count_estimated else ''}{db.count:,} {noun}"


def _refusal(extra: dict, typed: str) -> dict | None:
    """Return where a refusal's reason is shown: {"field": "typed" or the chosen value,
    "path": the file it names, "reason": ...}, or None when nothing was refused."""
    result = extra.get("refused")
    if not isinstance(result, selection.SelectionResult) or result.ok:
        return None
    return {
        "field": "typed" if typed.strip() else None,
        "path": result.path or typed.strip(),
        "reason": result.reason or "",
    }


def _selector_context(request: HttpRequest, **extra: object) -> dict:
    # The machine's history, or in production (unless an operator) this session's own.
    cache = selector_cache.for_request(request)
    databases = [
        dataclasses.replace(db, progress_url=preparing_url(db.label) or "")
        if db.preparing is not None or db.not_ready
        else db
        for db in scanner.scan()
    ]
    known = {db.path for db in databases}
    last_used = _last_used(request, cache)
    current = session.selected_path(request)
    # Recent paths not listed above; the last used and current databases are always in the
    # one list (never repeated). A recent path whose file is gone is shown as missing, never
    # pre-selected.
    recent_paths: list[str] = []
    for path in [*cache["recent_paths"], last_used, current]:
        if path and path not in known and path not in recent_paths:
            recent_paths.append(path)
    recent = [_recent_entry(p) for p in recent_paths]
    typed = str(extra.get("typed_path") or "")
    posted = request.POST.get("choice", "") if request.method == "POST" else ""
    listed = {db.path for db in databases} | {e["path"] for e in recent}
    refusal = _refusal(extra, typed)
    if refusal is not None and refusal["field"] is None:
        # Shown on the chosen row; a choice that is no row of the list: under the typed field.
        refusal["field"] = posted if posted in listed else "typed"
        refusal["path"] = refusal["path"] or posted
    # Exactly one option is checked: the typed path after a refusal, else the posted choice,
    # the current database, the last used one, the first usable one, else the typed field.
    selectable = [db.path for db in databases] + [e["path"] for e in recent if not e["missing"]]
    usable = [db.path for db in databases if db.usable]
    checked = ""
    if not typed.strip():
        for candidate in [posted, current, last_used, *usable[:1]]:
            if candidate and candidate in selectable:
                checked = candidate
                break
    rows = []
    for db in databases:
        badge_class, badge_text = _state_badge(db)
        rows.append(
            {
                "db": db,
                "value": db.path,
                "where": db.location if db.kind == "postgresql" else db.path,
                "badge_class": badge_class,
                "badge_text": badge_text,
                "modified": _when(db.modified),
                "count_text": _count_text(db),
                "last_used": db.path == last_used,
                "current": db.path == current,
                "checked": db.path == checked,
            }
        )
    for entry in recent:
        entry.update(
            value=entry["path"],
            last_used=entry["path"] == last_used,
            current=entry["path"] == current,
            checked=entry["path"] == checked and not entry["missing"],
        )
    return {
        "databases": databases,
        "rows": rows,
        "recent_paths": recent,
        "last_used": last_used,
        "current_path": current,
        "checked_path": checked,
        "typed_checked": not checked,
        "refusal": refusal,
        "browse_start": _browse_start(cache),
        "next": safe_next(request),
        "create_url": create_url(),
        **extra,
    }


@require_http_methods(["GET", "POST"])
def select_database(request: HttpRequest) -> HttpResponse:
    """Show the selector (GET) or switch the session to the chosen database (POST)."""
    if request.method == "GET":
        return render_selector(request)
    typed = request.POST.get("path", "")
    raw = typed if typed.strip() else request.POST.get("choice", "")
    # A database still being built has no file yet: follow its progress instead.
    being_prepared = scanner.preparing_at(raw)
    if being_prepared is not None and preparing_url(being_prepared[0]):
        return HttpResponseRedirect(preparing_url(being_prepared[0]))
    result = selection.select(request, raw, display_name=request.POST.get("display_name", ""))
    if result.ok:
        for warning in result.warnings:
            messages.warning(request, warning)
        messages.success(request, f"Now working on {session.selected_name(request)}.")
        target = safe_next(request)
        if not request.user.is_authenticated:
            login = resolve_url(settings.LOGIN_URL)
            if target:
                login += "?" + urlencode({"next": target})
            return HttpResponseRedirect(login)
        return HttpResponseRedirect(target or home_url())
    if result.info is not None and result.info.state is SchemaState.NEEDS_MIGRATION:
        return _migration_plan(request, result, typed)
    return refused(request, result.reason or "", typed_path=typed, refused=result)


def may_migrate(request: HttpRequest) -> bool:
    """Return True when this session may migrate a database it is not working on yet.

    Changing another file is a server-wide power: an operator's (dbselect.permissions), never
    that of whoever is admin of the file the session happens to work on.
    """
    return permissions.is_operator(request)


def render_selector(request: HttpRequest, *, status: int = 200, **extra: object) -> HttpResponse:
    """Render the selector page with `extra` added to its context, answering `status`."""
    return render(request, TEMPLATE, _selector_context(request, **extra), status=status)


def refused(request: HttpRequest, reason: str, status: int = 400, **extra: object) -> HttpResponse:
    """Render the selector after a refusal: the session keeps its database, with the banner."""
    current = session.selected_path(request)
    if current:
        messages.error(request, fallback_banner(session.selected_name(request) or current, reason))
    else:
        messages.error(request, f"The database could not be opened. Reason: {reason}")
    return render_selector(request, status=status, **extra)


def _migration_plan(
    request: HttpRequest, result: selection.SelectionResult, typed: str
) -> HttpResponse:
    """Show admins the pending migrations with an approval form; block everybody else."""
    info = result.info
    assert info is not None
    plan = {
        "typed_path": typed,
        "migration": info,
        "migration_display_name": request.POST.get("display_name", ""),
        "migrate_url": migrate_url(),
    }
    if may_migrate(request):
        messages.warning(
            request,
            f"This database needs {len(info.pending)} "
            f"{ngettext('migration', 'migrations', len(info.pending))} before it can be used. "
            "Review the plan and apply it; a snapshot is taken first.",
        )
        return render_selector(request, **plan)
    messages.error(
        request,
        f"This database needs migration before it can be used ({migration_names(info.pending)}). "
        "Only an operator can apply migrations: sign in as an administrator of an operator "
        "database, then select it again.",
    )
    return render_selector(request, status=403, **plan)


@require_POST
def forget_recent(request: HttpRequest) -> HttpResponse:
    """Remove one entry from the recent paths this visitor sees (anyone may, for their list)."""
    path = str(request.POST.get("path", ""))[: get_config()["MAX_PATH_LENGTH"]]
    if path and selector_cache.forget(request, path):
        messages.info(request, f"Removed {path} from the recent databases.")
    else:
        messages.info(request, "That path was not among the recent databases.")
    url = resolve_url("dbselect:select")
    target = safe_next(request)
    return HttpResponseRedirect(url + ("?" + urlencode({"next": target}) if target else ""))


@require_GET
def browse(request: HttpRequest) -> JsonResponse:
    """Return folders and database files under ?dir= as JSON for the browse widget."""
    # Without ?dir=: the last browsed folder this request may know of, else databases/ (refused
    # like any other folder when it lies outside the allowed roots).
    folder = request.GET.get("dir") or selector_cache.for_request(request)["last_browsed_dir"]
    folder = folder or str(get_config()["DATABASES_DIR"])
    try:
        return JsonResponse(list_folder(folder))
    except PathRejected as exc:
        return JsonResponse({"error": str(exc)}, status=400)


def healthz(request: HttpRequest) -> JsonResponse:
    """Answer load balancers without touching any database."""
    return JsonResponse({"status": "ok"})
