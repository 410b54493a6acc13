"""An attachment: a document of a company or a project, its bytes in the payload store."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from nukeworks.companies.models import Company, Project


class Attachment(models.Model):
    """One uploaded document. The row names its content by SHA-256; the bytes lie beside the
    database (payloads.store), so equal content is stored once and snapshots share it."""

    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    sha256 = models.CharField("SHA-256", max_length=64, db_index=True)
    size = models.BigIntegerField()
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    uploaded_by_name = models.CharField(max_length=150, blank=True)
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-uploaded_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(company__isnull=False) & Q(project__isnull=True))
                | (Q(company__isnull=True) & Q(project__isnull=False)),
                name="attachment_has_one_owner",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def owner(self) -> Company | Project:
        """Return the company or project the document belongs to."""
        return self.company if self.company_id else self.project  # type: ignore[return-value]
