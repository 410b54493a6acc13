"""The engines page: list the cached engines of every worker process, dispose them.

The page answers at once with what is known (this worker's table as it is now, the others'
as they last published it) and asks the other workers to publish; its script
(static/dbselect/engines.js) then fetches `data` (JSON with the same tables rendered again,
waiting up to ENGINE_REFRESH_WAIT for the answers) and puts it in place.

Server-wide powers: operators only (dbselect.permissions), never the admin of just any file.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dbselect import engines, session
from dbselect.engines import admin_table, observe, slow_queries
from dbselect.permissions import admin_required, operator_required
from dbselect.session import display_name_for


@require_GET
@operator_required
def engine_list(request: HttpRequest) -> HttpResponse:
    """Show every cached engine of every worker process (no waiting: the page refreshes)."""
    data = admin_table.overview(wait=0)
    return render(request, "dbselect/engines.html", _context(data, refreshing=True))


@require_GET
@operator_required
def engine_data(request: HttpRequest) -> JsonResponse:
    """The page's tables once the other workers answered (or ENGINE_REFRESH_WAIT passed).

    `since`: when the page asked them (its tables' `data-asked`); tables published since
    then count as fresh, so a refresh right after the page usually waits for nothing.
    """
    try:
        since = float(request.GET["since"])
    except (KeyError, ValueError):
        since = None
    data = admin_table.overview(since=since)
    html = render_to_string(
        "dbselect/_engines_live.html", _context(data, refreshing=False), request=request
    )
    return JsonResponse(
        {"html": html, "missing": data.missing, "asked": data.asked, "engines": len(data.engines)}
    )


def _context(data: admin_table.Overview, *, refreshing: bool) -> dict[str, object]:
    return {"overview": data, "idle_count": len(data.idle_paths()), "refreshing": refreshing}


@require_POST
@operator_required
def dispose(request: HttpRequest) -> HttpResponse:
    """Dispose one engine in every worker process."""
    path = request.POST.get("path", "")
    known = {e.path: e for e in admin_table.overview(wait=0).engines}
    if path not in known:
        messages.error(request, "That database is not in the engine cache (any more).")
    else:
        admin_table.dispose_paths([path], request)
        name = display_name_for(path, known[path].display_name)
        messages.success(
            request,
            f"Disposed {name}: every worker closes its connections to it. Sessions still on it "
            "re-open it on their next request.",
        )
    return HttpResponseRedirect(reverse("dbselect-engines:list"))


@require_POST
@operator_required
def dispose_idle(request: HttpRequest) -> HttpResponse:
    """Dispose every engine no worker has used for ENGINE_IDLE_SECONDS."""
    data = admin_table.overview()
    count = admin_table.dispose_paths(data.idle_paths(), request)
    if count:
        messages.success(request, f"Disposed {count} idle engine{'s' if count != 1 else ''}.")
    else:
        messages.info(request, "No engine was idle.")
    return HttpResponseRedirect(reverse("dbselect-engines:list"))


@require_GET
@admin_required
def slow_query_list(request: HttpRequest) -> HttpResponse:
    """The recent slow queries of the session's database, in every worker (its admins)."""
    path = session.selected_path(request) or ""
    engine = engines.get(path)
    real = engine.path if engine is not None else path
    entries = [
        {**entry, "when": admin_table.when(entry["at"])} for entry in slow_queries.recent_for(real)
    ]
    return render(
        request,
        "dbselect/slow_queries.html",
        {
            "entries": entries,
            "threshold_ms": observe.threshold_ms(),
            "label": observe.label_for_path(real) if real else "",
        },
    )
