"""Upload, download and delete attachments of a company or project (signed-in users)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from nukeworks.attachments import names, service
from nukeworks.attachments.forms import UploadForm
from nukeworks.attachments.models import Attachment
from nukeworks.companies.models import Company, Project

OWNERS = {"company": Company, "project": Project}


@require_POST
@login_required
def upload(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    """Attach the posted file to the company or project; back to its page with a message."""
    owner = get_object_or_404(OWNERS[kind], pk=pk)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose a file to attach.")
    else:
        try:
            attachment = service.add(owner, form.cleaned_data["file"], request=request)
        except service.PayloadError as exc:
            messages.error(request, f"The file was not attached: {exc}")
        else:
            messages.success(request, f"“{attachment.name}” attached.")
    return HttpResponseRedirect(owner.get_absolute_url())


@require_GET
@login_required
def download(request: HttpRequest, pk: int) -> HttpResponse:
    """Send the attachment's bytes as a download, never as a page of this site."""
    attachment = get_object_or_404(Attachment, pk=pk)
    try:
        content = service.open_content(attachment)
    except service.AttachmentMissing:
        raise Http404("The file of this attachment is missing.") from None
    return download_response(attachment, content)


def download_response(attachment: Attachment, content) -> FileResponse:
    """Return the streamed download of `attachment` (shared with the API)."""
    response = FileResponse(
        content,
        as_attachment=True,
        filename=attachment.name,
        content_type=names.served_type(attachment.content_type),
    )
    response["X-Content-Type-Options"] = "nosniff"
    # Even opened directly, the bytes run nothing with this site's origin.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response


@require_POST
@login_required
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete the attachment (its row; the file stays while snapshots reference it)."""
    attachment = get_object_or_404(Attachment, pk=pk)
    owner = attachment.owner
    name = attachment.name
    service.delete(attachment, request=request)
    messages.success(request, f"“{name}” deleted.")
    return HttpResponseRedirect(owner.get_absolute_url())
