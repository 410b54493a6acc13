"""Which tables a bundle carries, in the order they are written and applied.

A bundle holds a database's *domain* data: companies, their projects, their attachments,
and (only when the package says so) the users. Each table is one JSON Lines file
`data/<label>.jsonl`, one JSON object per row keyed by the model's column names (`company_id`
for a foreign key). Primary keys in a bundle are only names for rows: applying a bundle gives
every row a new key and rewrites every reference (`refs`) to the new key of the row it names;
a null reference stays null.

An `optional` table (attachments) is written only when it has rows, and a bundle without it
(made before attachments existed, or of a database without any) simply has none: such
bundles stay readable by versions that do not know the table. A table with `payload` names
content kept beside the database (payloads.store): the bundle carries those files too.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from django.apps import apps
from django.db import models


@dataclass(frozen=True)
class Table:
    """One exported table."""

    label: str  # "<app_label>.<model_name>", e.g. "companies.company"
    # Columns never exported (machine-local values); they get the field's default on import.
    exclude: tuple[str, ...] = ()
    # Foreign-key column -> label of the table whose rows it references (all in the bundle).
    refs: dict[str, str] = field(default_factory=dict)
    # Rows of the target database with the same value here are kept, the bundle's are skipped
    # (users: an account that already exists, e.g. the admin who imports, is never replaced).
    keep_existing_by: str | None = None
    users: bool = False
    # Written only when it has rows; a bundle without it has none.
    optional: bool = False
    # Exactly one of these columns holds a value in every row (attachments: company or project).
    one_of: tuple[str, ...] = ()
    # (hash column, size column) of rows naming a payload: a SHA-256 and its size in bytes.
    payload: tuple[str, str] | None = None

    @property
    def app_label(self) -> str:
        return self.label.split(".", 1)[0]

    @property
    def file(self) -> str:
        return f"data/{self.label}.jsonl"

    def model(self) -> type[models.Model]:
        return apps.get_model(self.label)

    def fields(self) -> list[models.Field]:
        """Return the concrete fields exported, primary key first."""
        model = self.model()
        pk = model._meta.pk
        rest = [
            f for f in model._meta.concrete_fields if f is not pk and f.attname not in self.exclude
        ]
        return [pk, *rest]

    def columns(self) -> list[str]:
        return [f.attname for f in self.fields()]


TABLES: tuple[Table, ...] = (
    Table("companies.company"),
    Table("companies.project", refs={"company_id": "companies.company"}),
    Table(
        "attachments.attachment",
        # The uploader is a user of the source file; the name recorded with the row stays.
        exclude=("uploaded_by_id",),
        refs={"company_id": "companies.company", "project_id": "companies.project"},
        optional=True,
        one_of=("company_id", "project_id"),
        payload=("sha256", "size"),
    ),
    Table(
        "accounts.user",
        # Paths of another machine's database files mean nothing in this one.
        exclude=("last_db_path", "last_db_display_name"),
        keep_existing_by="username",
        users=True,
    ),
)
BY_LABEL = {t.label: t for t in TABLES}
# The tables whose rows make a database "hold data" (attachments belong to their rows).
DOMAIN_TABLES = (BY_LABEL["companies.company"], BY_LABEL["companies.project"])


def tables_for(include_users: bool) -> tuple[Table, ...]:
    """Return the tables a bundle with or without users may carry (optional ones included)."""
    return tuple(t for t in TABLES if include_users or not t.users)


def tables_in(labels: Container[str], include_users: bool) -> tuple[Table, ...]:
    """Return the tables of `tables_for(include_users)` named in `labels`, in their order."""
    return tuple(t for t in tables_for(include_users) if t.label in labels)
