"""Pages under /select-db/ (reachable before a database is selected).

- `new`: the operators' "New database…" form; POST queues the build and redirects to
- `progress`: the page of a database being prepared, which follows `status` (JSON) with a
  small script (static/provisioning/progress.js) and selects the database once it is ready;
  operators rebuild (`rebuild`) or discard (`discard`) a database that never became ready.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.hashers import make_password
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dbselect import permissions, session
from dbselect.permissions import operator_required
from provisioning import progress, service, worker
from provisioning.forms import COPY_LOGIN, NewDatabaseForm


def operator_name(request: HttpRequest) -> str:
    """Return the username of this session's sign-in to an operator database."""
    for path in permissions.operator_databases():
        login = session.login_for(request, path)
        if login:
            return str(login.get("username") or "")
    return ""


def _copy_user(request: HttpRequest) -> Any:
    """Return the user signed in to the session's current database, if any."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and session.selected_path(request):
        return user
    return None


@never_cache
@require_http_methods(["GET", "POST"])
@operator_required
def new_database(request: HttpRequest) -> HttpResponse:
    """Show the form (GET) or queue the new database's build (POST)."""
    copy_user = _copy_user(request)
    form = NewDatabaseForm(request.POST or None, copy_user=copy_user)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if data["admin"] == COPY_LOGIN and copy_user is not None:
            username, encoded = copy_user.get_username(), copy_user.password
        else:
            username, encoded = data["admin_username"], make_password(data["admin_password"])
        try:
            job = service.request_build(
                data["label"],
                seed=form.seed_ref(),
                display_name=data["display_name"],
                admin_username=username,
                admin_password_hash=encoded,
                requested_by=operator_name(request),
                via="selector",
                request=request,
                postgres_like=form.postgres_like(),
            )
        except service.ProvisioningError as exc:
            form.add_error(None, exc.message)
            status = exc.status
        else:
            messages.success(request, f"The database {job.label!r} is queued to be built.")
            return HttpResponseRedirect(reverse("provisioning:progress", args=[job.label]))
    elif request.method == "POST":
        status = 400
    return render(
        request,
        "provisioning/new.html",
        {"form": form, "worker_running": worker.running()},
        status=status,
    )


def _status_or_404(label: str) -> progress.Status:
    try:
        service.check_label(label)
    except service.ProvisioningError:
        raise Http404("No such database.") from None
    current = progress.status(label)
    if current.state == progress.MISSING:
        raise Http404(current.message)
    return current


@never_cache
@require_GET
def progress_page(request: HttpRequest, label: str) -> HttpResponse:
    """Show where a database being prepared stands; the page follows it by itself."""
    current = _status_or_404(label)
    return render(
        request,
        "provisioning/progress.html",
        {
            "status": current,
            "database_path": progress.target_for(label),
            "may_act": permissions.may_be_operator(request),
            "worker_running": worker.running(),
        },
    )


@never_cache
@require_GET
def status(request: HttpRequest, label: str) -> JsonResponse:
    """Where a database being prepared stands, as JSON (for the progress page's script)."""
    return JsonResponse(_status_or_404(label).public())


@require_POST
@operator_required
def rebuild(request: HttpRequest, label: str) -> HttpResponse:
    """Queue the build of a database that never became ready again (operators)."""
    _status_or_404(label)
    try:
        service.retry(label, requested_by=operator_name(request), via="selector", request=request)
    except service.ProvisioningError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"The database {label!r} is queued to be built again.")
    return HttpResponseRedirect(reverse("provisioning:progress", args=[label]))


@require_POST
@operator_required
def discard(request: HttpRequest, label: str) -> HttpResponse:
    """Move a database that never became ready aside (operators); nothing is deleted."""
    _status_or_404(label)
    try:
        target = service.discard(
            label, requested_by=operator_name(request), via="selector", request=request
        )
    except service.ProvisioningError as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("provisioning:progress", args=[label]))
    messages.success(request, f"The database {label!r} was discarded (moved to {target}).")
    return HttpResponseRedirect(reverse("dbselect:select"))
