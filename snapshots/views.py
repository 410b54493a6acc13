"""The snapshot pages at /snapshots/: always about the database the session works on."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit import log as audit_log
from dbselect import engines, session
from dbselect.permissions import admin_required
from snapshots import naming, retention, service
from snapshots.forms import CreateSnapshotForm, RetentionForm

logger = logging.getLogger("nukeworks.snapshots")

DENIED = "Only administrators of this database can manage its snapshots."
# Every snapshot page: the admins of the session's database only (403 otherwise, never a
# redirect to a login form), each refused POST audited.
snapshot_admin = admin_required(audit_action="snapshot.denied", message=DENIED)

# Ignored entries of the snapshots folder named on the page; the rest are only counted (a
# folder someone filled with junk must not make the page huge).
MAX_IGNORED_SHOWN = 50


def _database(request: HttpRequest) -> str:
    path = session.selected_path(request)
    assert path is not None  # snapshot_admin refuses sessions without a database
    return path


def _username(request: HttpRequest) -> str:
    return str(getattr(request.user, "username", ""))


def _to_list() -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("snapshots:list"))


def _snapshot_or_404(database: str, name: str) -> service.Snapshot:
    try:
        return service.get_snapshot(database, name)
    except service.SnapshotNotFound:
        raise Http404("There is no such snapshot of this database.") from None


@require_GET
@snapshot_admin
def snapshot_list(request: HttpRequest) -> HttpResponse:
    """List the selected database's snapshots with the create and retention forms."""
    database = _database(request)
    alias = engines.register(database).alias
    try:
        scanned = service.scan_folder(database)
    except service.SnapshotError as exc:
        messages.error(request, str(exc))
        scanned = service.FolderScan([])
    snapshots = scanned.snapshots
    policy, doomed = service.prune_plan(database) if snapshots else (retention.load(alias), [])
    return render(
        request,
        "snapshots/list.html",
        {
            "database_path": database,
            "database_name": session.selected_name(request) or database,
            "folder": service.folder_for(database),
            "snapshots": snapshots,
            "ignored": scanned.ignored[:MAX_IGNORED_SHOWN],
            "ignored_more": max(0, len(scanned.ignored) - MAX_IGNORED_SHOWN),
            "total_size": sum(s.size for s in snapshots),
            "time_zone": timezone.get_current_timezone_name(),
            "policy": policy,
            "prune_count": len(doomed),
            "create_form": CreateSnapshotForm(),
            "retention_form": RetentionForm(
                initial={
                    "max_snapshots": policy.max_snapshots,
                    "retention_days": policy.retention_days,
                }
            ),
        },
    )


@require_POST
@snapshot_admin
def snapshot_create(request: HttpRequest) -> HttpResponse:
    """Take a snapshot of the selected database now."""
    form = CreateSnapshotForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"No snapshot was taken. Note: {' '.join(form.errors['note'])}")
        return _to_list()
    try:
        snapshot = service.create_snapshot(
            _database(request),
            note=form.cleaned_data["note"],
            username=_username(request),
            request=request,
        )
    except service.SnapshotError as exc:
        messages.error(request, f"No snapshot was taken. {exc}")
    else:
        messages.success(request, f"Snapshot {snapshot.name} created.")
    return _to_list()


@require_GET
@snapshot_admin
def snapshot_download(request: HttpRequest, name: str) -> FileResponse:
    """Send a snapshot file as a download.

    The response streams the very descriptor that was checked to be a regular snapshot file
    inside the folder (never a link, FIFO or file outside it, see snapshots.folder).
    """
    database = _database(request)
    try:
        snapshot, handle = service.open_snapshot(database, name)  # FileResponse closes it
    except service.SnapshotNotFound:
        raise Http404("There is no such snapshot of this database.") from None
    audit_log.record(
        "snapshot.download",
        target=str(snapshot.path),
        request=request,
        using=engines.register(database).alias,
    )
    # A PostgreSQL database's snapshot is a pg_dump archive (read it with pg_restore).
    content_type = (
        "application/octet-stream"
        if snapshot.name.endswith(naming.PG_SUFFIX)
        else "application/vnd.sqlite3"
    )
    return FileResponse(
        handle, as_attachment=True, filename=snapshot.name, content_type=content_type
    )


@require_http_methods(["GET", "POST"])
@snapshot_admin
def snapshot_delete(request: HttpRequest, name: str) -> HttpResponse:
    """Ask for confirmation (GET), then delete one snapshot (POST)."""
    database = _database(request)
    if request.method == "GET":
        snapshot = _snapshot_or_404(database, name)
        return render(request, "snapshots/confirm_delete.html", {"snapshot": snapshot})
    try:
        snapshot = service.delete_snapshot(
            database, name, username=_username(request), request=request
        )
    except service.SnapshotNotFound:
        # Like GET: a name that is no snapshot of this database (deleted meanwhile, or an
        # ignored entry of the folder such as a link) does not exist here.
        raise Http404("There is no such snapshot of this database.") from None
    except service.SnapshotError as exc:
        messages.error(request, f"Nothing was deleted. {exc}")
    else:
        messages.success(request, f"Snapshot {snapshot.name} deleted.")
    return _to_list()


@require_http_methods(["GET", "POST"])
@snapshot_admin
def snapshot_restore(request: HttpRequest, name: str) -> HttpResponse:
    """Ask for confirmation (GET), then restore the database to a snapshot (POST)."""
    database = _database(request)
    if request.method == "GET":
        snapshot = _snapshot_or_404(database, name)
        return render(
            request,
            "snapshots/confirm_restore.html",
            {"snapshot": snapshot, "database_name": session.selected_name(request)},
        )
    try:
        result = service.restore_snapshot(
            database, name, username=_username(request), request=request
        )
    except service.SnapshotNotFound:
        raise Http404("There is no such snapshot of this database.") from None
    except service.SnapshotError as exc:
        messages.error(request, f"The database was not restored. {exc}")
        return _to_list()
    taken = f"(taken {result.restored.created_at:%Y-%m-%d %H:%M:%S} UTC)"
    if result.safety is not None:
        messages.success(
            request,
            f"The database was restored to snapshot {result.restored.name} {taken}. Its state "
            f"just before the restore is kept in the safety snapshot {result.safety.name}.",
        )
    else:
        messages.warning(
            request,
            f"The database was restored to snapshot {result.restored.name} {taken}, but its "
            "safety snapshot could not be written: its state just before the restore is kept "
            f"on the PostgreSQL server as the database {result.kept_database}.",
        )
    return _after_restore(request, database)


def _after_restore(request: HttpRequest, database: str) -> HttpResponse:
    """Refresh the session after its database's content changed under it.

    The restored file has its own users and display name: the session switches to it again
    (dbselect.session, reason "restored"), which reads the header's name again and makes the
    listeners re-verify the sign-in against the restored file (accounts: a user id from before
    the restore may name someone else now).
    """
    try:
        engine, _ = engines.validate_and_register(database)
    except engines.DatabaseUnavailable as exc:
        messages.error(request, f"The restored database cannot be opened: {exc.reason}")
        return HttpResponseRedirect(reverse("dbselect:select"))
    session.switch(request, engine, reason="restored")
    if not request.user.is_authenticated:
        return HttpResponseRedirect(resolve_url(settings.LOGIN_URL))
    return _to_list()


@require_POST
@snapshot_admin
def retention_settings(request: HttpRequest) -> HttpResponse:
    """Save the database's retention policy (it is applied only by "Apply retention now")."""
    form = RetentionForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(
            f"{form.fields[field].label}: {' '.join(errors)}"
            for field, errors in form.errors.items()
        )
        messages.error(request, f"The retention settings were not saved. {problems}")
        return _to_list()
    database = _database(request)
    alias = engines.register(database).alias
    policy = form.policy()
    retention.save(alias, policy)
    audit_log.record(
        "snapshot.retention",
        target=str(service.folder_for(database)),
        request=request,
        using=alias,
        detail=policy.describe(),
    )
    messages.success(request, f"Retention saved: {policy.describe()}.")
    return _to_list()


@require_http_methods(["GET", "POST"])
@snapshot_admin
def snapshot_prune(request: HttpRequest) -> HttpResponse:
    """Show what the retention policy would delete (GET), then delete it (POST)."""
    database = _database(request)
    if request.method == "GET":
        policy, doomed = service.prune_plan(database)
        return render(request, "snapshots/confirm_prune.html", {"policy": policy, "doomed": doomed})
    try:
        deleted = service.prune(database, username=_username(request), request=request)
    except service.SnapshotError as exc:
        messages.error(request, f"Retention was not applied. {exc}")
    else:
        if deleted:
            deleted_text = ngettext(
                "%(n)d snapshot deleted", "%(n)d snapshots deleted", len(deleted)
            ) % {"n": len(deleted)}
            messages.success(request, f"Retention applied: {deleted_text}.")
        else:
            messages.info(request, "Retention applied: no snapshot needed deleting.")
    return _to_list()
