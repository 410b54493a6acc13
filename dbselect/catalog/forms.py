"""The catalog page's form: register a PostgreSQL database under a label (operators).

The URL holds a password, so its field is a password input that never renders its value: a
form shown again after an error has an empty URL field, and the page shows only the redacted
form of what was typed (`redacted_url`).
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from dbselect import catalog
from dbselect.catalog.dsn import check_label, parse

MAX_URL = 2000


class AddEntryForm(forms.Form):
    label = forms.CharField(
        max_length=40,
        help_text="What the selector lists and --database names: 1 to 40 letters, digits, "
        "'_' or '-'.",
    )
    url = forms.CharField(
        label="URL",
        max_length=MAX_URL,
        strip=True,
        # render_value=False (the default): the URL is never sent back to the browser.
        widget=forms.PasswordInput(
            attrs={"autocomplete": "off", "placeholder": "postgresql://user:password@host:5432/db"}
        ),
        help_text="postgresql://user:password@host:port/dbname (sslmode=… may follow).",
    )
    display_name = forms.CharField(
        max_length=200,
        required=False,
        help_text="Shown when the database names itself nothing.",
    )
    no_check = forms.BooleanField(
        required=False,
        label="Register without connecting first",
        help_text="The server is down for now; the selector shows its state once it answers.",
    )

    def clean_label(self) -> str:
        label = self.cleaned_data["label"].strip()
        try:
            return check_label(label)
        except catalog.BadURL as exc:
            raise ValidationError(str(exc)) from None

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            parse(url)
        except catalog.BadURL as exc:
            raise ValidationError(str(exc)) from None
        return url

    def redacted_url(self) -> str:
        """What the operator typed as URL, without its password ("" when nothing was)."""
        raw = self.data.get("url", "") if self.is_bound else ""
        return catalog.redact(raw) if isinstance(raw, str) and raw.strip() else ""
