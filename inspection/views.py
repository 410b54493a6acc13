"""The inspection and the full check of the session's database on its details page (/database/).

- `details_context`: what provisioning's details page shows of the file (inspection.contents,
  under a time budget: the page never reads a large file to its end) and of its last full check;
- `start_check` (POST /database/check, admins): queues the full check (inspection.jobs) and
  audits it; the check itself runs in the queue's worker, never in the request;
- `check_status` (GET /database/check/status, admins): the check's progress as JSON, polled by
  static/inspection/check.js.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from audit import log as audit_log
from dbselect import session
from dbselect.catalog.postgres import describe_error
from dbselect.files import locks
from dbselect.permissions import admin_required
from inspection import jobs, postgres, service
from inspection.contents import inspect_file
from inspection.targets import TargetError, of_path

# Seconds the details page may spend counting rows and summing pages: the page stays well
# under 50 ms on a million rows (bench/bench_scale.py); a table not counted in time shows its
# largest row id as an estimate, and the full check or `manage.py dbinspect` counts it.
PAGE_TIME_BUDGET = 0.02
# A PostgreSQL database: its connection alone takes a few ms, and its counts are exact or
# none (bench_scale measures the SQLite pages; PostgreSQL keeps its own budget).
PG_PAGE_TIME_BUDGET = 2.0
DENIED = "Only an administrator of this database can check it."


def details_context(database: str) -> dict[str, Any]:
    """Return the template context of the inspection and full-check sections for `database`."""
    inspection, problem = None, ""
    try:
        target = of_path(database)
        if target.entry is not None:
            inspection = postgres.inspect(
                target.entry, label=target.label, time_budget=PG_PAGE_TIME_BUDGET
            )
        else:
            inspection = inspect_file(
                target.path, target.header, label=target.label, time_budget=PAGE_TIME_BUDGET
            )
    except TargetError as exc:
        problem = str(exc)
    except sqlite3.Error as exc:
        problem = f"SQLite cannot read the file: {exc}"
    except psycopg.Error as exc:
        problem = describe_error(exc)
    return {
        "inspection": inspection,
        "inspection_problem": problem,
        "full_check": jobs.read(database),
    }


def _database(request: HttpRequest) -> str:
    path = session.selected_path(request)
    assert path is not None  # admin_required refuses sessions without a database
    return path


@never_cache
@require_POST
@admin_required(audit_action=service.CHECK_ACTION, message=DENIED)
def start_check(request: HttpRequest) -> HttpResponse:
    """Queue a full check of the session's database (or follow the one already under way)."""
    database = _database(request)
    username = str(getattr(request.user, "username", "") or "")
    try:
        status, created = jobs.start(database, requested_by=username)
    except (OSError, locks.LockTimeout) as exc:
        messages.error(request, f"The check could not be queued: {exc}")
        return HttpResponseRedirect(reverse("provisioning:details") + "#full-check")
    if created:
        audit_log.record(
            service.CHECK_ACTION,
            target=database,
            outcome="queued",
            detail=f"integrity_check, foreign_key_check and attachment files; job {status.job}",
            request=request,
        )
        messages.success(
            request, "The full check is queued; this page shows its progress and its result."
        )
    else:
        messages.info(request, "A full check of this database is already under way.")
    return HttpResponseRedirect(reverse("provisioning:details") + "#full-check")


@never_cache
@require_GET
@admin_required(message=DENIED)
def check_status(request: HttpRequest) -> JsonResponse:
    """The full check's progress: {"state": "none|queued|running|done|failed|interrupted", …}."""
    status = jobs.read(_database(request))
    if status is None:
        return JsonResponse({"state": "none", "percent": 0})
    return JsonResponse(status.as_json())
