from django import forms
from django.db import models
from django.urls import reverse_lazy

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


class CompanyPicker(forms.ModelChoiceField):
    """A company typed by name (a text input with suggestions, see static/companies/picker.js),
    never a <select> of every company: a database may hold a million. The company's id is
    accepted too (forms posted by scripts and older pages)."""

    widget = forms.TextInput

    def __init__(self, **kwargs):
        super().__init__(queryset=Company.objects.all(), **kwargs)
        self.widget.attrs.update(
            {
                "list": "company-options",
                "autocomplete": "off",
                "data-company-picker": reverse_lazy("companies:company-search"),
            }
        )
        self.help_text = "Type a few letters of the company's name and choose it."

    def prepare_value(self, value):
        if isinstance(value, Company):
            return value.name
        if isinstance(value, int):
            company = Company.objects.filter(pk=value).only("name").first()
            return company.name if company else value
        return value

    def to_python(self, value):
        if value in self.empty_values:
            return None
        text = str(value).strip()
        company = Company.objects.filter(name=text).first()
        if company is None and text.isdigit():
            company = Company.objects.filter(pk=int(text)).first()
        if company is None:
            raise forms.ValidationError(
                f"No company is named “{text}”: choose one of the suggestions.",
                code="invalid_choice",
            )
        return company

    def has_changed(self, initial, data):
        return str(self.prepare_value(initial) or "") != str(data or "")


class ProjectForm(forms.ModelForm):
    company = CompanyPicker()

    class Meta:
        model = Project
        fields = ["name", "company", "status", "capacity_mw", "cod_date", "notes"]
        widgets = {"cod_date": forms.DateInput(attrs={"type": "date"})}
