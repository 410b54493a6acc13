from django import forms
from django.db import models

from nukeworks.companies.models import Company, Project


def _https_by_default(field: models.Field, **kwargs):
    """Form fields for model fields, with URLs typed without a scheme taken as https."""
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class CompanyForm(forms.ModelForm):
    class Meta:
        model = Company
        fields = [
            "name",
            "country",
            "website",
            "is_vendor",
            "is_owner",
            "is_operator",
            "is_constructor",
            "notes",
        ]
        formfield_callback = _https_by_default


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name", "company", "status", "capacity_mw", "cod_date", "notes"]
        widgets = {"cod_date": forms.DateInput(attrs={"type": "date"})}
