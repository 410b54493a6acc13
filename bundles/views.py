"""The Export / Import page at /bundles/: always about the database the session works on.

Admins of the selected database only (403 otherwise, every refused POST audited as
"bundle.denied"). Export answers a .zip download of the database's domain data and its
attachment files; Import takes a .zip upload into the database when it holds no companies or
projects yet, validates it completely and applies it in one transaction (its attachment files
into the selected database's payload store, see bundles.package.apply). An upload over the
size limit is refused (413) before it is opened.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from django.contrib import messages
from django.db import DatabaseError
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from audit import log as audit_log
from bundles import conf, package
from dbselect import engines, session
from dbselect.permissions import admin_required

logger = logging.getLogger("nukeworks.bundles")

DENIED = "Only administrators of this database can export or import its data."
bundle_admin = admin_required(audit_action="bundle.denied", message=DENIED)


def _alias(request: HttpRequest) -> str:
    path = session.selected_path(request)
    assert path is not None  # bundle_admin refuses sessions without a database
    return engines.register(path).alias


def _page(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    alias = _alias(request)
    try:
        rows = package.domain_rows(alias)
    except DatabaseError as exc:
        rows, error = -1, error or f"The database cannot be read: {exc}."
    return render(
        request,
        "bundles/page.html",
        {
            "database_name": session.selected_name(request) or session.selected_path(request),
            "domain_rows": rows,
            "can_import": rows == 0,
            "upload_limit": conf.upload_max_bytes(),
            "error": error,
        },
        status=status,
    )


@require_GET
@bundle_admin
def bundle_page(request: HttpRequest) -> HttpResponse:
    """Show the Export and Import forms."""
    return _page(request)


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:40]
    return slug or "nukeworks"


@require_POST
@bundle_admin
def bundle_export(request: HttpRequest) -> HttpResponse:
    """Answer the selected database's domain data as a .zip bundle (a download)."""
    alias = _alias(request)
    include_users = request.POST.get("include_users") == "on"
    name = _slug(str(session.selected_name(request) or "nukeworks"))
    version = timezone.now().strftime("%Y%m%d%H%M%S")
    folder = tempfile.mkdtemp(prefix="nukeworks-export-")
    target = Path(folder) / f"{name}-{version}.zip"
    try:
        bundle = package.export(
            alias, target, name=name, version=version, include_users=include_users
        )
        handle = open(target, "rb")  # noqa: SIM115 - FileResponse closes it
    except package.BundleError as exc:
        audit_log.record("bundle.export", outcome="failed", detail=str(exc), request=request)
        return _page(request, error=f"Nothing was exported. {exc}", status=exc.status)
    finally:
        # The open handle keeps the data readable; no file is left behind on any path.
        target.unlink(missing_ok=True)
        os.rmdir(folder)
    audit_log.record(
        "bundle.export",
        target=target.name,
        detail=f"{bundle.ref} {bundle.counts}" + (" with users" if include_users else ""),
        request=request,
    )
    return FileResponse(
        handle, as_attachment=True, filename=target.name, content_type="application/zip"
    )


def _too_large(request: HttpRequest, limit: int) -> HttpResponse:
    message = f"The upload is larger than the limit ({limit} bytes). Nothing was imported."
    audit_log.record("bundle.import", outcome="refused", detail=message, request=request)
    return _page(request, error=message, status=413)


@require_POST
@bundle_admin
def bundle_import(request: HttpRequest) -> HttpResponse:
    """Import an uploaded .zip into the selected database (which holds no domain rows).

    Django has received the upload (into a temporary file, never all in memory) by the time
    the CSRF check has read the form; its size is checked first. Limit request bodies in the
    reverse proxy too (e.g. nginx `client_max_body_size`).
    """
    limit = conf.upload_max_bytes()
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    upload = request.FILES.get("bundle")
    if declared > limit + 64 * 1024 or (upload is not None and upload.size > limit):
        return _too_large(request, limit)
    if upload is None:
        return _page(request, error="Choose a .zip bundle to import.", status=400)
    alias = _alias(request)
    include_users = request.POST.get("include_users") == "on"
    with tempfile.TemporaryDirectory(prefix="nukeworks-import-") as folder:
        if hasattr(upload, "temporary_file_path"):
            path = Path(upload.temporary_file_path())  # already a file: read it in place
        else:
            path = Path(folder) / "upload.zip"
            with open(path, "xb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
        try:
            bundle = package.load(path, max_bytes=max(limit, conf.max_bytes()))
            # Unchecked: the bundle's users stay out; checked: they come if it has any.
            counts = package.apply(bundle, alias, include_users=None if include_users else False)
        except package.BundleError as exc:
            audit_log.record(
                "bundle.import",
                outcome="refused",
                target=upload.name or "",
                detail=str(exc),
                request=request,
            )
            return _page(request, error=f"Nothing was imported. {exc}", status=exc.status)
    audit_log.record(
        "bundle.import",
        target=upload.name or "",
        detail=f"{bundle.ref} {counts}",
        request=request,
    )
    rows = ", ".join(
        ngettext("%(n)d %(table)s row", "%(n)d %(table)s rows", n)
        % {"n": n, "table": label.split(".")[1]}
        for label, n in counts.items()
    )
    messages.success(request, f"Imported {bundle.ref}: {rows}.")
    return HttpResponseRedirect(reverse("bundles:page"))
