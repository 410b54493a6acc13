from django import forms

from nukeworks.companies.models import Company, Project


class CompanyForm(forms.ModelForm):
    class Meta:
        model = Company
        fields = [
            "name", "country", "is_vendor", "is_owner", "is_operator", "is_constructor", "notes",
        ]


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name", "company", "status", "capacity_mw", "cod_date", "notes"]
        widgets = {"cod_date": forms.DateInput(attrs={"type": "date"})}
