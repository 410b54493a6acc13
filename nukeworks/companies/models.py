"""The domain each NukeWorks database holds: companies and their projects."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse


class Company(models.Model):
    """A company in the nuclear project landscape, with the roles it plays."""

    name = models.CharField(max_length=200, unique=True)
    is_vendor = models.BooleanField("vendor", default=False)
    is_owner = models.BooleanField("owner", default=False)
    is_operator = models.BooleanField("operator", default=False)
    is_constructor = models.BooleanField("constructor", default=False)
    country = models.CharField(max_length=100, blank=True)
    website = models.URLField(blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "companies"
        # The list's sort columns, each with the id as tie-breaker (name is unique already).
        indexes = [
            models.Index(fields=["country", "id"], name="company_country_id"),
            models.Index(fields=["updated_at", "id"], name="company_updated_id"),
            # Searching a large table: names starting with the term, case-insensitively.
            models.Index(Lower("name"), "id", name="company_lower_name_id"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("companies:company-detail", args=[self.pk])

    @property
    def roles(self) -> list[str]:
        """Return the names of the roles this company plays."""
        flags = {
            "vendor": self.is_vendor,
            "owner": self.is_owner,
            "operator": self.is_operator,
            "constructor": self.is_constructor,
        }
        return [name for name, on in flags.items() if on]


class Project(models.Model):
    """A reactor project of a company."""

    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        LICENSING = "licensing", "Licensing"
        CONSTRUCTION = "construction", "Under construction"
        OPERATING = "operating", "Operating"
        CANCELLED = "cancelled", "Cancelled"

    name = models.CharField(max_length=200)
    company = models.ForeignKey(Company, on_delete=models.PROTECT, related_name="projects")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PLANNED)
    capacity_mw = models.DecimalField(
        "capacity (MW)", max_digits=9, decimal_places=1, null=True, blank=True
    )
    cod_date = models.DateField("commercial operation date", null=True, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        # The list's sort columns with the id as tie-breaker; a company's projects by name.
        indexes = [
            models.Index(fields=["name", "id"], name="project_name_id"),
            models.Index(fields=["status", "id"], name="project_status_id"),
            models.Index(fields=["capacity_mw", "id"], name="project_capacity_id"),
            models.Index(fields=["cod_date", "id"], name="project_cod_id"),
            models.Index(fields=["company", "name", "id"], name="project_company_name_id"),
            models.Index(Lower("name"), "id", name="project_lower_name_id"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("companies:project-detail", args=[self.pk])
