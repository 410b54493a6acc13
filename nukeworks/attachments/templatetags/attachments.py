"""{% attachments_section owner %}: the attachments of a company or project, with the form."""

from __future__ import annotations

from django import template
from django.urls import reverse

from nukeworks.attachments import service
from nukeworks.attachments.forms import UploadForm

register = template.Library()


@register.inclusion_tag("attachments/_section.html", takes_context=True)
def attachments_section(context, owner):
    """Render the owner's attachments (a missing file marked) and the upload form."""
    kind = owner._meta.model_name
    return {
        "rows": service.rows_for(owner),
        "form": UploadForm(),
        "upload_url": reverse(f"attachments:{kind}-upload", args=[owner.pk]),
        "max_bytes": service.max_bytes(),
        "csrf_token": context.get("csrf_token"),
    }
