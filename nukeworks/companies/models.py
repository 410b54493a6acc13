"""The domain each NukeWorks database holds: companies and their projects."""

from __future__ import annotations

from django.db import models
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

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("companies:project-detail", args=[self.pk])
