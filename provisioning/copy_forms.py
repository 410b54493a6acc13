"""The forms of "Duplicate…" and "Restore as new database…": a new label and display name."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from provisioning import service


class NewCopyForm(forms.Form):
    label = forms.CharField(
        max_length=40,
        help_text="Folder name under databases/: letters, digits, '-' and '_'.",
    )
    display_name = forms.CharField(
        max_length=service.MAX_DISPLAY_NAME,
        required=False,
        help_text="The name the selector shows (default: the label).",
    )

    def clean_label(self) -> str:
        label = self.cleaned_data["label"].strip()
        try:
            return service.check_label(label)
        except service.ProvisioningError as exc:
            raise ValidationError(exc.message) from None


class DuplicateForm(NewCopyForm):
    schema_only = forms.BooleanField(
        required=False,
        label="Schema only",
        help_text="An empty database: no companies, projects, attachments, tokens or sessions; "
        "the administrators are kept with their passwords.",
    )
