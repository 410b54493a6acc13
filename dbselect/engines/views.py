"""The engines page: list the cached engines of every worker process, dispose them.

Server-wide powers: operators only (dbselect.permissions), never the admin of just any file.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dbselect.engines import admin_table
from dbselect.permissions import operator_required
from dbselect.session import display_name_for


@require_GET
@operator_required
def engine_list(request: HttpRequest) -> HttpResponse:
    """Show every cached engine of every worker process."""
    data = admin_table.overview()
    return render(
        request,
        "dbselect/engines.html",
        {"overview": data, "idle_count": len(data.idle_paths())},
    )


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
