"""Real PostgreSQL and Redis servers for the tests that need them, one each per test run.

Started on free 127.0.0.1 ports with their data in temporary folders by
nukeworks/cluster/services.py (the code `make cluster` uses), and stopped when the run ends.
`make test` installs Debian's packages when missing (`python -m nukeworks.cluster packages`);
without them (not root, no apt), the tests that need a server are skipped with the reason.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nukeworks.cluster import services


def _started(kind: str, start) -> Iterator[services.Service]:
    missing = services.missing_packages((kind,))
    if missing:
        pytest.skip(f"Debian package {' '.join(missing)} is not installed")
    folder = Path(tempfile.mkdtemp(prefix=f"nukeworks-{kind}-"))
    service = start(folder)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[services.Service]:
    """A PostgreSQL server: `.extra["url"]` is its superuser URL (database `postgres`)."""
    password = "pg-" + secrets.token_hex(12)
    yield from _started(
        "postgresql", lambda folder: services.start_postgres(folder, password=password)
    )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[services.Service]:
    """A Redis server: `.extra["url"]` is its URL (database 0)."""
    yield from _started("redis-server", lambda folder: services.start_redis(folder))


@pytest.fixture(scope="session")
def pg_template(postgres_server: services.Service, django_db_blocker) -> str:
    """The name of a migrated NukeWorks database on the server, copied for each test."""
    from django.core.management import call_command
    from django.db import connections

    from dbselect import catalog, state
    from dbselect.catalog import dsn, postgres
    from dbselect.engines.cache import publish_alias

    server = dsn.parse(postgres_server.extra["url"])
    name = "nw_template"
    postgres.create_database(server, name)
    entry = catalog.CatalogEntry("nwtemplate", server.with_dbname(name))
    alias = "nw_pg_template"
    publish_alias(alias, catalog.django_settings(entry, connections.databases["default"]))
    with django_db_blocker.unblock(), state.override(alias):
        call_command("migrate", database=alias, verbosity=0, interactive=False)
    connections[alias].close()
    return name


@pytest.fixture
def make_pg_database(postgres_server: services.Service, pg_template: str):
    """Return a factory: make_pg_database(label, name=..., companies=[...], users=[...]).

    Each call creates a fresh PostgreSQL database (a copy of the migrated template, or an
    empty one with `migrated=False`), registers it in this test's catalog under `label` and
    returns its session target (`postgresql:<label>`). The databases are dropped afterwards.
    """
    from dbselect import catalog
    from dbselect.catalog import dsn, postgres
    from tests.helpers import add_rows

    server = dsn.parse(postgres_server.extra["url"])
    made: list[str] = []
    targets: list[str] = []

    def factory(
        label: str,
        *,
        name: str | None = "PG Test DB",
        companies=(),
        users=(),
        migrated: bool = True,
    ) -> str:
        dbname = f"t_{label.replace('-', '_')}_{secrets.token_hex(4)}"[:63]
        postgres.create_database(server, dbname, template=pg_template if migrated else None)
        made.append(dbname)
        entry = catalog.add(label, server.with_dbname(dbname).url())
        targets.append(entry.target)
        if migrated and (name is not None or companies or users):
            add_rows(entry.target, name=name, companies=companies, users=users)
        return entry.target

    yield factory
    from django.db import connections

    from dbselect import engines

    # The engine cache outlives the test: a later test reusing a label must not get this
    # engine (its database is dropped below).
    for target in targets:
        engines.dispose(target)
    connections.close_all()
    for dbname in made:
        postgres.drop_database(server, dbname)


@pytest.fixture(autouse=True)
def _forget_postgres_engines() -> Iterator[None]:
    """The engine cache outlives a test, its catalog does not (tests/conftest.py): a label the
    next test registers again is another database, never served by this test's engine."""
    yield
    from dbselect import catalog, engines

    for engine in engines.all():
        if catalog.is_target(engine.target):
            engines.dispose(engine.target)


def database_names(url, like: str = "%") -> list[str]:
    """Return the names of the databases on `url`'s server (matching LIKE `like`)."""
    from dbselect.catalog import postgres

    with postgres.maintenance(url) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,))
        return [r[0] for r in rows]


@pytest.fixture
def postgres_url(postgres_server: services.Service):
    """The server's superuser URL, parsed; every nw_* database a test made is dropped after."""
    from django.db import connections

    from dbselect.catalog import dsn, postgres

    url = dsn.parse(postgres_server.extra["url"])
    before = set(database_names(url))
    yield url
    connections.close_all()
    for name in set(database_names(url)) - before:
        if name.startswith("nw_"):
            postgres.drop_database(url, name)
