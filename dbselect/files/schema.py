"""The code's schema version: its migration graph, loaded once per process.

Django migrations are NukeWorks' schema versions; the "required schema version" is the set of
leaf migrations of the code. Comparing a file's `django_migrations` rows against this cached
plan costs a set difference, never a rebuild of the graph from disk.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from dbselect.conf import get_config

Migration = tuple[str, str]


def schema_apps() -> frozenset[str]:
    """Return the apps whose migrations mark a file as one of this project's databases.

    DBSELECT["SCHEMA_APPS"]; by default dbselect's own (every database it manages has them).
    """
    return frozenset(get_config()["SCHEMA_APPS"])


def migration_names(migrations: Iterable[Migration]) -> str:
    """Return migrations as the text shown to people: "app.name, app.name"."""
    return ", ".join(f"{app}.{name}" for app, name in migrations)


class SchemaState(enum.StrEnum):
    """Where a database file stands against the code's migrations."""

    UP_TO_DATE = "up_to_date"
    NEEDS_MIGRATION = "needs_migration"
    NEWER = "newer"
    NOT_NUKEWORKS = "not_nukeworks"

    @property
    def label(self) -> str:
        return {
            "up_to_date": "Up to date",
            "needs_migration": "Needs migration",
            "newer": "Created by a newer version",
            "not_nukeworks": "Not a NukeWorks database",
        }[self.value]


@dataclass(frozen=True)
class CodeMigrations:
    """The code's migrations: every node, and all of them in the order they apply."""

    nodes: frozenset[Migration]
    plan: tuple[Migration, ...]
    apps: frozenset[str]


@dataclass(frozen=True)
class SchemaComparison:
    """A file's applied migrations compared with the code's."""

    state: SchemaState
    pending: tuple[Migration, ...] = ()
    unknown: tuple[Migration, ...] = ()


@cache
def code_migrations() -> CodeMigrations:
    """Return the code's migration graph, built once per process."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    graph = loader.graph
    plan: list[Migration] = []
    seen: set[Migration] = set()
    for leaf in sorted(graph.leaf_nodes()):
        for node in graph.forwards_plan(leaf):
            if node not in seen:
                seen.add(node)
                plan.append(node)
    return CodeMigrations(
        nodes=frozenset(graph.nodes), plan=tuple(plan), apps=frozenset(a for a, _ in plan)
    )


def compare(applied: set[Migration]) -> SchemaComparison:
    """Compare the migrations applied in a file with the code's."""
    code = code_migrations()
    apps = schema_apps()
    if not any(app in apps for app, _ in applied):
        return SchemaComparison(SchemaState.NOT_NUKEWORKS)
    unknown = tuple(sorted(m for m in applied if m[0] in code.apps and m not in code.nodes))
    if unknown:
        return SchemaComparison(SchemaState.NEWER, unknown=unknown)
    pending = tuple(m for m in code.plan if m not in applied)
    if pending:
        return SchemaComparison(SchemaState.NEEDS_MIGRATION, pending=pending)
    return SchemaComparison(SchemaState.UP_TO_DATE)


@receiver(setting_changed)
def _reset_code_migrations(*, setting: str, **kwargs: Any) -> None:
    if setting in {"MIGRATION_MODULES", "INSTALLED_APPS"}:
        code_migrations.cache_clear()
