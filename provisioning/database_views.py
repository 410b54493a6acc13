"""The pages about the session's database as a whole, under /database/.

- `details`: path, display name, size, schema state, snapshots, what is inside the file and
  its last full check (the inspection app: tables with row counts and sizes, journal mode, page
  size, free list, triggers; the check runs in the queue's worker), the attachments'
  integrity, and the actions below (admins of the database);
- `duplicate`: "Duplicate…" (admins): a copy into databases/<label>/ (provisioning.copies);
- `restore_as_new`: "Restore as new database…" for one snapshot (admins), linked from the
  snapshot list;
- `archive`: "Archive…" (operators), a confirmation page, then provisioning.archive.

Every refused POST is audited in the session's database; the actions audit themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from audit import log as audit_log
from dbselect import catalog, engines, permissions, selection, session
from dbselect.engines import gate
from dbselect.files.validation import ValidationFailed
from dbselect.layout import catalog_label
from dbselect.permissions import admin_required
from inspection import views as inspection
from nukeworks.attachments import integrity
from provisioning import archive as archiving
from provisioning import copies, worker
from provisioning.forms import DuplicateForm, NewLabelForm
from provisioning.service import ProvisioningError
from snapshots import service as snapshots

DENIED = "Only an administrator of this database can do this."
ARCHIVE_DENIED = permissions.DENIED


def _database(request: HttpRequest) -> str:
    path = session.selected_path(request)
    assert path is not None  # admin_required refuses sessions without a database
    return path


def _username(request: HttpRequest) -> str:
    return str(getattr(request.user, "username", "") or "")


def _operators_only(action: str) -> Callable[[Callable[..., HttpResponse]], Any]:
    """403 for anyone but an operator (every method); a refused POST is audited."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not permissions.is_operator(request):
                if request.method == "POST":
                    audit_log.record(
                        action,
                        target=request.path,
                        outcome="denied",
                        detail=f"{request.method} {request.path}: not an operator",
                        request=request,
                    )
                names = ", ".join(permissions.operator_databases())
                raise PermissionDenied(ARCHIVE_DENIED.format(names=names))
            if not session.selected_path(request):
                raise PermissionDenied("No database is selected.")
            return view(request, *args, **kwargs)

        wrapper.__name__ = view.__name__
        wrapper.__doc__ = view.__doc__
        return wrapper

    return decorate


# -- details --------------------------------------------------------------------------------


def _integrity(database: str, verify: bool) -> tuple[integrity.IntegrityReport | None, str]:
    """Return the attachments' integrity report (or None) and why there is none."""
    try:
        return integrity.check(database, verify_hashes=verify), ""
    except Exception as exc:  # a report must never take the page down
        return None, f"The attachments could not be checked: {exc}"


@never_cache
@require_GET
@admin_required
def details(request: HttpRequest) -> HttpResponse:
    """Show the session's database as a whole, with what admins and operators can do to it."""
    database = _database(request)
    try:
        info = selection.inspect_target(database)
        state, problem = info.state, ""
    except ValidationFailed as exc:
        info, state, problem = None, None, exc.reason
    file_size, wal_size = selection.database_size(database)
    try:
        snapshot_count: int | None = len(snapshots.list_snapshots(database))
    except snapshots.SnapshotError:
        snapshot_count = None
    verify = request.GET.get("verify") == "1"
    report, report_problem = _integrity(database, verify)
    label = catalog_label(database)
    return render(
        request,
        "provisioning/details.html",
        {
            "database_path": database,
            "database_name": session.selected_name(request) or database,
            "label": label,
            "info": info,
            "state": state,
            "problem": problem,
            "file_size": file_size,
            "wal_size": wal_size,
            "is_postgres": catalog.is_target(database),
            "snapshot_count": snapshot_count,
            "snapshot_folder": snapshots.folder_for(database),
            "report": report,
            "report_problem": report_problem,
            "verified": verify,
            "archivable": bool(label)
            and not catalog.is_target(database)
            and not archiving.is_protected(database),
            **inspection.details_context(database),
            "worker_running": worker.running(),
        },
    )


# -- duplicate ------------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
@admin_required(audit_action=copies.COPY_ACTION, message=DENIED)
def duplicate(request: HttpRequest) -> HttpResponse:
    """Show the form (GET) or copy the session's database into a new one (POST)."""
    database = _database(request)
    form = DuplicateForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            made = copies.duplicate(
                database,
                data["label"],
                display_name=data["display_name"],
                schema_only=data["schema_only"],
                requested_by=_username(request),
                via="page",
                request=request,
            )
        except ProvisioningError as exc:
            form.add_error(None, exc.message)
            status = exc.status
        else:
            messages.success(request, _created_message(made))
            return HttpResponseRedirect(reverse("provisioning:details"))
    elif request.method == "POST":
        copies.audit_refused(request, copies.COPY_ACTION, database, form.errors.as_text())
        status = 400
    return render(
        request,
        "provisioning/duplicate.html",
        {"form": form, "database_name": session.selected_name(request) or database},
        status=status,
    )


def _created_message(made: copies.NewCopy) -> str:
    text = (
        f"Created the database “{made.display_name}” ({made.label}) at {made.path}: "
        f"{made.carried.describe()}. It is listed on the Database page."
    )
    if made.carried.missing:
        text += " Some attachment files were already missing here; they are missing there too."
    if made.schema_state == "needs_migration":
        text += (
            " The snapshot predates the latest migrations: its admins migrate it on selecting it."
        )
    return text


# -- restore as new -------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
@admin_required(audit_action=copies.RESTORE_AS_NEW_ACTION, message=DENIED)
def restore_as_new(request: HttpRequest, name: str) -> HttpResponse:
    """Show the snapshot and the form (GET), or make a new database of it (POST)."""
    database = _database(request)
    try:
        snapshot = snapshots.get_snapshot(database, name)
    except snapshots.SnapshotNotFound:
        raise Http404("There is no such snapshot of this database.") from None
    form = NewLabelForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            made = copies.restore_as_new(
                database,
                snapshot.name,
                data["label"],
                display_name=data["display_name"],
                requested_by=_username(request),
                via="page",
                request=request,
            )
        except ProvisioningError as exc:
            form.add_error(None, exc.message)
            status = exc.status
        else:
            messages.success(request, _created_message(made))
            return HttpResponseRedirect(reverse("snapshots:list"))
    elif request.method == "POST":
        copies.audit_refused(
            request, copies.RESTORE_AS_NEW_ACTION, str(snapshot.path), form.errors.as_text()
        )
        status = 400
    return render(
        request,
        "provisioning/restore_as_new.html",
        {"form": form, "snapshot": snapshot, "database_name": session.selected_name(request)},
        status=status,
    )


# -- archive --------------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
@_operators_only(archiving.ARCHIVE_ACTION)
def archive(request: HttpRequest) -> HttpResponse:
    """Ask for confirmation (GET), then archive the session's database (POST)."""
    database = _database(request)
    label = catalog_label(database)
    refusal = ""
    if catalog.is_target(database):
        refusal = archiving.POSTGRES_REFUSAL.format(label=label)
    elif label is None:
        refusal = (
            "Only databases of the catalog folder (databases/<label>/) are archived; this file "
            "lies elsewhere."
        )
    elif archiving.is_protected(database):
        refusal = "This is an operator database (or the project's default): it is never archived."
    if request.method == "GET" or refusal:
        if refusal and request.method == "POST":
            audit_log.record(
                archiving.ARCHIVE_ACTION,
                target=database,
                outcome="denied",
                detail=refusal,
                request=request,
            )
        return render(
            request,
            "provisioning/archive.html",
            {
                "database_path": database,
                "database_name": session.selected_name(request) or database,
                "label": label,
                "refusal": refusal,
            },
            status=409 if refusal and request.method == "POST" else 200,
        )
    try:
        archived = archiving.archive(
            label, requested_by=_username(request), via="page", request=request
        )
    except ProvisioningError as exc:
        messages.error(request, f"The database was not archived. {exc.message}")
        return HttpResponseRedirect(reverse("provisioning:details"))
    text = (
        f"The database “{archived.display_name}” was archived to {archived.path}. Nothing was "
        f"deleted: manage.py archivedb --restore {archived.name} brings it back."
    )
    return _leave_archived(request, database, text)


def _leave_archived(request: HttpRequest, database: str, text: str) -> HttpResponse:
    """Move this session off the database it just archived: back to its previous one, if any."""
    previous = request.session.get(session.PREVIOUS_PATH)
    if previous and previous != database:
        try:
            engine = engines.open(previous)
        except (engines.DatabaseUnavailable, gate.GateClosed, DatabaseError):
            pass
        else:
            session.switch(request, engine, reason="fallback")
            messages.success(request, f"{text} You now work on {session.selected_name(request)}.")
            return HttpResponseRedirect("/")
    session.clear(request)
    messages.success(request, f"{text} Select the database to work on.")
    return HttpResponseRedirect(reverse("dbselect:select"))
