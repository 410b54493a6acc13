"""The apps import one way: dbselect <- snapshots <- migrating <- api; dbselect names no other app.

Imports are read with `ast`, so one written inside a function body counts as much as one at
the top of a module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_DBSELECT_MODULES = 22


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Return every module name `path` imports, wherever in the file the import stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from nukeworks import companies` imports nukeworks.companies.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _imports_of(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in _modules(package):
        for name in sorted(_imported(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}: {name}")
    return found


def test_the_import_reader_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from snapshots import naming\n    import migrating.service\n")
    assert {"snapshots.naming", "migrating.service"} <= _imported(module)


def test_dbselect_imports_no_app_built_on_it():
    built_on_dbselect = (
        "snapshots",
        "migrating",
        "accounts",
        "nukeworks.companies",
        "api",
        "bundles",
        "provisioning",
        "huey",
        "payloads",
    )
    assert _imports_of("dbselect", built_on_dbselect) == []


def test_payloads_imports_nothing_built_on_it():
    """The payload store sits just above dbselect: snapshots, copies, bundles and the
    attachments app use it; it knows none of them (tables register themselves)."""
    above = ("snapshots", "migrating", "accounts", "nukeworks", "api", "bundles", "provisioning")
    assert _imports_of("payloads", above) == []


def test_provisioning_imports_nothing_of_the_api():
    """The API creates databases through provisioning, never the other way round."""
    assert _imports_of("provisioning", ("api",)) == []


def test_nothing_below_inspection_imports_it():
    """dbinspect, dbcheck and the details page's inspection sit above dbselect, snapshots and
    the attachments; provisioning's details page uses them, never the other way round."""
    below = (
        "dbselect",
        "payloads",
        "snapshots",
        "migrating",
        "accounts",
        "audit",
        "nukeworks",
        "bundles",
    )
    for package in below:
        assert _imports_of(package, ("inspection",)) == [], package
    assert _imports_of("inspection", ("provisioning", "api", "migrating")) == []


def test_snapshots_imports_nothing_of_migrating():
    assert _imports_of("snapshots", ("migrating", "api")) == []


@pytest.mark.parametrize("package", ["migrating", "accounts", "audit"])
def test_nothing_below_the_api_imports_it(package):
    assert _imports_of(package, ("api",)) == []


def test_audit_imports_no_app_that_records_entries():
    assert _imports_of("audit", ("dbselect", "snapshots", "migrating", "accounts", "api")) == []


@pytest.mark.parametrize("package", ["dbselect", "snapshots", "migrating"])
def test_apps_write_no_session_key_of_another_app(package):
    """Only dbselect.session writes the selection's keys; other apps go through its API."""
    pattern = re.compile(
        r"session(\[|\.pop\(|\.setdefault\()[^\n]*"
        r"\b(SELECTED_|PREVIOUS_|DB_LOGINS|FINGERPRINT|AUTH_DB_PATH|selected_db_)"
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _modules(package)
        if path != ROOT / "dbselect" / "session.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_dbselect_keeps_few_top_level_modules():
    modules = sorted(p.name for p in (ROOT / "dbselect").glob("*.py"))
    assert len(modules) <= MAX_DBSELECT_MODULES, modules


def test_django_private_connections_attribute_is_read_in_one_place_at_most():
    """`connections._connections` (Django's private per-thread storage): one reader at most.

    The identifier itself, not names that merely end with it (`close_old_connections`).
    """
    pattern = re.compile(r"(?<![A-Za-z0-9_])_connections\b")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in ("dbselect", "accounts", "snapshots")
        for path in _modules(package)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert len(found) <= 1, found


@pytest.mark.parametrize(
    "package",
    [
        "dbselect",
        "accounts",
        "audit",
        "payloads",
        "snapshots",
        "migrating",
        "bundles",
        "provisioning",
        "inspection",
        "api",
        "nukeworks",
    ],
)
def test_nothing_imports_the_metrics_app(package):
    """metrics listens (dbselect.signals, huey's signals); the apps it measures never import it.

    nukeworks/gunicorn.conf.py is not a module of the project package: it prepares the
    metrics folder before any worker starts.
    """
    found = [
        line
        for line in _imports_of(package, ("metrics",))
        if not line.startswith("nukeworks/gunicorn.conf.py")
    ]
    assert found == []
