"""The forms that make a new database: "New database…" (operators), "Duplicate…" and
"Restore as new database…" (admins)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from provisioning import service

EMPTY = "empty"
COPY_LOGIN = "copy"
NEW_ADMIN = "new"


class NewLabelForm(forms.Form):
    """A new database's label and display name: every form that makes one starts here."""

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


FILE = ""


class NewDatabaseForm(NewLabelForm):
    seed = forms.ChoiceField(label="Content", help_text="A seed package, or an empty database.")
    # Where it lives: a SQLite file, or a new database on the server of a catalog entry (its
    # host, port, user and password; the visitor never types a server or a URL).
    server = forms.ChoiceField(
        label="Where",
        required=False,
        help_text="A new database on a PostgreSQL server is named nw_<label> there and "
        "registered in the catalog under the label once it is ready.",
    )
    admin = forms.ChoiceField(label="First administrator", widget=forms.RadioSelect)
    admin_username = forms.CharField(label="Username", max_length=150, required=False)
    admin_password = forms.CharField(
        label="Password", required=False, strip=False, widget=forms.PasswordInput
    )
    admin_password2 = forms.CharField(
        label="Password again", required=False, strip=False, widget=forms.PasswordInput
    )

    def __init__(self, *args: Any, copy_user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.copy_user = copy_user
        seeds = [
            (p.ref, f"{p.ref} — {p.description}" if p.description else p.ref)
            for p in service.seed_choices()
        ]
        self.fields["seed"].choices = [*seeds, (EMPTY, "Empty (no data)")]
        if seeds:
            self.fields["seed"].initial = seeds[0][0]
        choices = [(NEW_ADMIN, "A new administrator:")]
        if copy_user is not None:
            choices.insert(
                0,
                (
                    COPY_LOGIN,
                    f"Copy my current login ({copy_user.get_username()}, with its password)",
                ),
            )
        self.fields["admin"].choices = choices
        self.fields["admin"].initial = choices[0][0]
        servers = [(s.label, s.describe()) for s in service.postgres_servers()]
        self.fields["server"].choices = [
            (FILE, "A SQLite file in databases/<label>/"),
            *servers,
        ]
        self.has_servers = bool(servers)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("admin") == NEW_ADMIN:
            username = (data.get("admin_username") or "").strip()
            password = data.get("admin_password") or ""
            if not username:
                self.add_error("admin_username", "Give the first administrator's username.")
            if not password:
                self.add_error("admin_password", "Give the first administrator's password.")
            elif password != data.get("admin_password2"):
                self.add_error("admin_password2", "The two passwords differ.")
            else:
                try:
                    validate_password(password)
                except ValidationError as exc:
                    self.add_error("admin_password", exc)
            data["admin_username"] = username
        return data

    def postgres_like(self) -> str | None:
        """Return the catalog entry whose server the database goes to, None for a file."""
        return self.cleaned_data.get("server") or None

    def seed_ref(self) -> str | None:
        seed = self.cleaned_data["seed"]
        return None if seed == EMPTY else seed


class DuplicateForm(NewLabelForm):
    schema_only = forms.BooleanField(
        required=False,
        label="Schema only",
        help_text="An empty database: no companies, projects, attachments, tokens or sessions; "
        "the administrators are kept with their passwords.",
    )
