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
