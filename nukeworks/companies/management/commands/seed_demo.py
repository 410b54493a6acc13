"""Fill a database with a few example companies and projects (idempotent)."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, transaction

from nukeworks.companies.models import Company, Project

COMPANIES = [
    ("Atlantic Reactor Works", "United States", {"is_vendor": True}),
    ("Nordic Power Utility", "Finland", {"is_owner": True, "is_operator": True}),
    ("Baltic Construction Group", "Poland", {"is_constructor": True}),
    ("Helios Small Modular", "Canada", {"is_vendor": True, "is_owner": True}),
]
PROJECTS = [
    ("Olkiluoto North 4", "Nordic Power Utility", "construction", "1200.0", (2031, 6, 1)),
    ("Lakeshore SMR 1", "Helios Small Modular", "licensing", "300.0", (2030, 1, 1)),
    ("Coastal Unit 2", "Atlantic Reactor Works", "planned", "1100.0", None),
]


class Command(BaseCommand):
    help = "Add example companies and projects to a database (skips those already present)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        with transaction.atomic(using=database):
            by_name = {}
            for name, country, roles in COMPANIES:
                company, _ = Company.objects.using(database).get_or_create(
                    name=name, defaults={"country": country, **roles}
                )
                by_name[name] = company
            for name, company, status, capacity, cod in PROJECTS:
                Project.objects.using(database).get_or_create(
                    name=name,
                    company=by_name[company],
                    defaults={
                        "status": status,
                        "capacity_mw": Decimal(capacity),
                        "cod_date": datetime.date(*cod) if cod else None,
                    },
                )
        total = Company.objects.using(database).count()
        self.stdout.write(self.style.SUCCESS(f"Database '{database}' holds {total} companies."))
