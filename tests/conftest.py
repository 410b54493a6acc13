"""Shared fixtures: real, migrated NukeWorks database files in temporary folders."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django.db import connections

from dbselect import engines, state
from dbselect.conf import get_config
from tests.helpers import add_rows, backup_copy

pytest_plugins = ["tests.services"]

_counter = itertools.count()


@pytest.fixture(autouse=True)
def _real_database_files(django_db_blocker) -> Iterator[None]:
    """Allow database access: these tests work on real SQLite files they create themselves."""
    with django_db_blocker.unblock():
        yield
        connections.close_all()


@pytest.fixture(autouse=True)
def _isolated_machine_state(tmp_path: Path, settings) -> Iterator[None]:
    """Give each test its own databases/ folder and selector JSON, and empty caches.

    The caches hold the sign-in rate limits and the API's throttles, counted per client
    address: every test client is 127.0.0.1, so one test's sign-ins must not count in the next.
    """
    for alias in settings.CACHES:
        caches[alias].clear()
    databases = tmp_path / "databases"
    databases.mkdir()
    settings.DBSELECT = {
        **settings.DBSELECT,
        "DATABASES_DIR": databases,
        "SELECTOR_CACHE_FILE": tmp_path / "instance" / "db_selector.json",
        # Each test registers its own PostgreSQL databases (tests/services.py).
        "CATALOG_FILE": tmp_path / "instance" / "catalog.json",
    }
    yield


def _migrated_file(path: Path, *targets: tuple[str, str]) -> None:
    engines.create_file(str(path))
    engine = engines.register(str(path))
    with state.override(engine.alias):
        if targets:
            call_command("migrate", database=engine.alias, verbosity=0, interactive=False)
            for app, target in targets:
                call_command("migrate", app, target, database=engine.alias, verbosity=0)
        else:
            call_command("migrate", database=engine.alias, verbosity=0, interactive=False)
    connections[engine.alias].close()
    engines.dispose(str(path))


@pytest.fixture(scope="session")
def template_database(django_db_blocker) -> Path:
    """A migrated database file, made once per test run and copied for each test."""
    folder = Path(settings.TEST_TMP_DIR) / "template"
    folder.mkdir(exist_ok=True)
    path = folder / "template.sqlite"
    with django_db_blocker.unblock():
        _migrated_file(path)
    return path


DatabaseFactory = Callable[..., Path]


@pytest.fixture
def make_database(tmp_path: Path, template_database: Path) -> DatabaseFactory:
    """Return a factory: make_database(name=..., companies=[...], users=[...], label=...).

    `users` items are (username, password, is_staff) tuples. With `label`, the file is
    databases/<label>/nukeworks.sqlite under the test's scanned folder.
    """

    def factory(
        name: str | None = "Test DB",
        companies: tuple[str, ...] | list[str] = (),
        users: tuple[tuple[str, str, bool], ...] | list[tuple[str, str, bool]] = (),
        label: str | None = None,
        path: Path | None = None,
    ) -> Path:
        if path is None:
            if label:
                folder = Path(get_config()["DATABASES_DIR"]) / label
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / "nukeworks.sqlite"
            else:
                path = tmp_path / f"db{next(_counter)}" / "nukeworks.sqlite"
                path.parent.mkdir(parents=True)
        backup_copy(template_database, path)
        add_rows(path, name=name, companies=companies, users=users)
        return path

    return factory


@pytest.fixture(scope="session")
def old_template(django_db_blocker) -> Path:
    """A database one migration behind the code (companies at 0001), with two companies."""
    folder = Path(settings.TEST_TMP_DIR) / "old-template"
    folder.mkdir(exist_ok=True)
    path = folder / "old.sqlite"
    with django_db_blocker.unblock():
        _migrated_file(path, ("companies", "0001_initial"))
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO companies_company (name, is_vendor, is_owner, is_operator, is_constructor,"
        " country, notes, created_at, updated_at) VALUES (?, 0, 1, 0, 0, '', '', ?, ?)",
        [("Legacy One", "2020-01-01", "2020-01-01"), ("Legacy Two", "2020-01-01", "2020-01-01")],
    )
    conn.execute(
        "INSERT INTO system_settings (key, value, updated_at) VALUES ('db_display_name', 'Old', ?)",
        ("2020-01-01",),
    )
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def make_old_database(tmp_path: Path, old_template: Path) -> DatabaseFactory:
    """Return a factory of databases one migration behind the code (see old_template)."""

    def factory(users=(), label: str | None = None) -> Path:
        if label:
            path = Path(get_config()["DATABASES_DIR"]) / label / "nukeworks.sqlite"
        else:
            path = tmp_path / f"old{next(_counter)}" / "nukeworks.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        backup_copy(old_template, path)
        if users:
            add_rows(path, users=users)
        return path

    return factory


@pytest.fixture
def old_database(make_old_database: DatabaseFactory) -> Path:
    """A NukeWorks database whose latest `companies` migration is not applied yet."""
    return make_old_database()
