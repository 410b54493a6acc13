"""Which tables a bundle carries, in the order they are written and applied.

A bundle holds a database's *domain* data: companies, their projects, and (only when the
package says so) the users. Each table is one JSON Lines file `data/<label>.jsonl`, one JSON
object per row keyed by the model's column names (`company_id` for a foreign key). Primary
keys in a bundle are only names for rows: applying a bundle gives every row a new key and
rewrites every reference (`refs`) to the new key of the row it names.
"""

from __future__ import annotations

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
        "accounts.user",
        # Paths of another machine's database files mean nothing in this one.
        exclude=("last_db_path", "last_db_display_name"),
        keep_existing_by="username",
        users=True,
    ),
)
BY_LABEL = {t.label: t for t in TABLES}
DOMAIN_TABLES = tuple(t for t in TABLES if not t.users)


def tables_for(include_users: bool) -> tuple[Table, ...]:
    """Return the tables a bundle with or without users carries."""
    return tuple(t for t in TABLES if include_users or not t.users)
