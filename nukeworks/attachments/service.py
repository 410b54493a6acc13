"""Adding, reading and deleting attachments of the database a request works on.

Pages, the admin and the API all go through here. The bytes are written (fsynced, renamed)
into the database's payload store before the row naming them is committed, under the store's
shared lock, so the collector never removes content a new row is about to name. Deleting an
attachment deletes its row only: the file stays for snapshots that still reference it, until
`manage.py payloads gc` finds nothing referencing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from django.core.files.uploadedfile import UploadedFile
from django.db import router, transaction
from django.http import HttpRequest

from audit import log as audit_log
from nukeworks.attachments import names
from nukeworks.attachments.conf import setting
from nukeworks.attachments.models import Attachment
from nukeworks.companies.models import Company, Project
from payloads.store import (
    EmptyPayload,
    PayloadError,
    PayloadStore,
    PayloadTooLarge,
    database_for_alias,
)

__all__ = [
    "AttachmentMissing",
    "EmptyPayload",
    "PayloadError",
    "PayloadTooLarge",
    "Row",
    "add",
    "delete",
    "max_bytes",
    "open_content",
    "rows_for",
    "store",
]


class AttachmentMissing(Exception):
    """The attachment's row exists but its file is not in the store ("file missing")."""


@dataclass(frozen=True)
class Row:
    """An attachment as a page lists it: the row and whether its file is there."""

    attachment: Attachment
    missing: bool


def max_bytes() -> int:
    """Return the largest upload accepted, in bytes."""
    return int(setting("MAX_BYTES"))


def database_path(alias: str | None = None) -> str:
    """Return the database the ORM works on now (or of `alias`): its file's path, or
    `postgresql:<label>` for a PostgreSQL database of the catalog."""
    return database_for_alias(alias or router.db_for_write(Attachment))


def store(alias: str | None = None) -> PayloadStore:
    """Return the payload store of the database the ORM works on now (or of `alias`)."""
    return PayloadStore.for_database(database_path(alias))


def _target(owner: Company | Project) -> str:
    return f"{owner._meta.model_name}:{owner.pk}"


def add(
    owner: Company | Project,
    upload: UploadedFile,
    *,
    request: HttpRequest | None = None,
    user: object | None = None,
) -> Attachment:
    """Store `upload` and attach it to `owner`; raise PayloadError (with a user's message)."""
    limit = max_bytes()
    if upload.size is not None and upload.size > limit:
        raise PayloadTooLarge(limit)
    upload.seek(0)
    head = upload.read(names.SNIFF_BYTES)
    upload.seek(0)
    content_type = names.sniff_type(head)
    name = names.clean_name(upload.name)
    user = user if user is not None else getattr(request, "user", None)
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    payloads = store()
    with payloads.writing():
        stored = payloads.put(upload.chunks(), max_bytes=limit)
        with transaction.atomic(using=router.db_for_write(Attachment)):
            attachment = Attachment.objects.create(
                company=owner if isinstance(owner, Company) else None,
                project=owner if isinstance(owner, Project) else None,
                sha256=stored.sha256,
                size=stored.size,
                name=name,
                content_type=content_type,
                uploaded_by=user,
                uploaded_by_name=str(getattr(user, "username", ""))[:150],
            )
    audit_log.record(
        "attachment.upload",
        target=_target(owner),
        detail=(
            f"#{attachment.pk} {name!r} {stored.size} bytes {content_type} "
            f"sha256={stored.sha256}{'' if stored.created else ' (content already stored)'}"
        ),
        request=request,
        user=user,
    )
    return attachment


def delete(
    attachment: Attachment, *, request: HttpRequest | None = None, user: object | None = None
) -> None:
    """Delete the attachment's row (its file stays for snapshots; see the module docstring)."""
    owner = attachment.owner
    detail = f"#{attachment.pk} {attachment.name!r} sha256={attachment.sha256}"
    attachment.delete()
    audit_log.record(
        "attachment.delete", target=_target(owner), detail=detail, request=request, user=user
    )


def open_content(attachment: Attachment) -> BinaryIO:
    """Open the attachment's bytes; raise AttachmentMissing when its file is not there."""
    try:
        return store().open(attachment.sha256)
    except (OSError, PayloadError):
        raise AttachmentMissing(attachment.name) from None


def rows_for(owner: Company | Project) -> list[Row]:
    """Return the owner's attachments, newest first, each with whether its file is there."""
    payloads = store()
    return [
        Row(attachment, missing=payloads.stat(attachment.sha256) is None)
        for attachment in owner.attachments.all()  # type: ignore[union-attr]
    ]
