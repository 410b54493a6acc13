"""Schema states of bundles: the migrations their data was exported at, and bringing it forward.

A bundle records the applied leaf migration of every app (`manifest["schema"]`, a list of
`[app, migration]`). Applying it compares that with the code:

- a migration the code does not know: the bundle was made by a newer NukeWorks -> refused;
- the same leaf for every app whose tables the bundle carries: applied as is;
- an older leaf: the data is brought forward through `UPGRADES`, one step per migration of
  those apps. Every migration of a data app must be listed there (tests/test_bundles.py checks
  it), with `None` when it changes no exported column, or a function `(label, row) -> row`.
  A migration listed as `REFUSE` cannot be brought forward: such bundles are refused with the
  reason.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from django.db import connections
from django.db.migrations.loader import MigrationLoader

Row = dict[str, Any]
Step = Callable[[str, Row], Row]
REFUSE = "refuse"


def _companies_0002_website(label: str, row: Row) -> Row:
    """companies 0002 added Company.website (blank URL): old companies get ""."""
    if label == "companies.company":
        row.setdefault("website", "")
    return row


# (app, migration) -> None (no exported column changes) | a step | REFUSE.
UPGRADES: dict[tuple[str, str], Step | str | None] = {
    ("companies", "0001_initial"): None,
    ("companies", "0002_company_website"): _companies_0002_website,
    ("companies", "0003_list_indexes"): None,  # indexes only
    ("accounts", "0001_initial"): None,
    ("attachments", "0001_initial"): None,
}


@cache
def _code_loader() -> MigrationLoader:
    return MigrationLoader(None, ignore_no_migrations=True)


def code_graph():
    """Return the migration graph of the code (read once per process)."""
    return _code_loader().graph


def code_leaves() -> dict[str, str]:
    """Return app -> leaf migration of the code."""
    return {app: name for app, name in code_graph().leaf_nodes()}


def applied_leaves(alias: str) -> dict[str, str]:
    """Return app -> latest applied migration in the database `alias` (apps of the code)."""
    applied = MigrationLoader(connections[alias], ignore_no_migrations=True).applied_migrations
    graph = code_graph()
    result: dict[str, str] = {}
    for app, leaf in code_leaves().items():
        if (app, leaf) in applied:
            result[app] = leaf
            continue
        # The latest applied migration of `app` along the code's plan to its leaf.
        for node in reversed(graph.forwards_plan((app, leaf))):
            if node[0] == app and node in applied:
                result[app] = node[1]
                break
    return result


def pending_for(alias: str, apps: set[str]) -> list[str]:
    """Return the code's migrations of `apps` not applied in `alias` (e.g. ["companies.0002…"])."""
    applied = applied_leaves(alias)
    leaves = code_leaves()
    return [f"{app}.{leaves[app]}" for app in sorted(apps) if applied.get(app) != leaves.get(app)]


def upgrade_plan(schema: dict[str, str], apps: set[str]) -> list[tuple[str, str]]:
    """Return the migrations of `apps` between the bundle's `schema` and the code, in order.

    Raise ValueError with the reason when the bundle is newer than the code or cannot be
    brought forward.
    """
    graph = code_graph()
    nodes = set(graph.nodes)
    for app, name in sorted(schema.items()):
        if (app, name) not in nodes:
            raise ValueError(
                f"The bundle was made by a newer version of NukeWorks (migration {app}.{name} "
                "is unknown here). Update NukeWorks before importing it."
            )
    leaves = code_leaves()
    plan: list[tuple[str, str]] = []
    for app in sorted(apps):
        if app not in schema:
            raise ValueError(f"The bundle does not say which schema of '{app}' its data has.")
        leaf = leaves[app]
        done = set(graph.forwards_plan((app, schema[app])))
        if (app, leaf) in done and schema[app] != leaf:
            # Known, but not an ancestor of our leaf (a branch we never had): newer.
            raise ValueError(f"The bundle's {app}.{schema[app]} is not part of this version.")
        for node in graph.forwards_plan((app, leaf)):
            if node[0] in apps and node not in done and node not in plan:
                plan.append(node)
    for node in plan:
        if node not in UPGRADES:
            raise ValueError(
                f"The bundle's data predates migration {node[0]}.{node[1]} and no way to bring "
                "it forward is known: export it again with the current version."
            )
        if UPGRADES[node] == REFUSE:
            raise ValueError(
                f"Data from before migration {node[0]}.{node[1]} cannot be brought forward: "
                "export it again with the current version."
            )
    return plan


def steps(plan: list[tuple[str, str]]) -> list[Step]:
    """Return the row functions of `plan` (migrations that change no exported column omitted)."""
    return [s for node in plan if callable(s := UPGRADES[node])]
