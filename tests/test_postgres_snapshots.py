"""Snapshots and restores of PostgreSQL databases of the catalog (real PostgreSQL server)."""

from __future__ import annotations

import psycopg
import pytest
from django.test import Client

from dbselect import catalog
from snapshots import service
from tests.helpers import add_rows, select, sign_in

ADMIN = ("kim", "pw-kim-12345", True)


def _url(target: str):
    entry = catalog.entry_for_target(target)
    assert entry is not None
    return entry.url


def _companies(target: str) -> list[str]:
    with psycopg.connect(**_url(target).libpq_params()) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM companies_company ORDER BY id")]


def _execute(target: str, query: str, params=()) -> None:
    with psycopg.connect(**_url(target).libpq_params(), autocommit=True) as conn:
        conn.execute(query, params)


@pytest.fixture
def plant(make_pg_database) -> str:
    return make_pg_database(
        "plantpg", name="Plant PG", users=[ADMIN], companies=["Acme", "Globex", "Initech"]
    )


def test_snapshot_change_restore_gives_back_exactly_the_snapshot(plant):
    snap = service.create_snapshot(plant, note="before", username="tester")
    assert snap.name.endswith(".pgdump") and snap.path.read_bytes()[:5] == b"PGDMP"
    _execute(plant, "DELETE FROM companies_company WHERE name = 'Globex'")
    add_rows(plant, companies=["Umbrella"])
    changed = _companies(plant)
    result = service.restore_snapshot(plant, snap.name, username="tester")
    assert _companies(plant) == ["Acme", "Globex", "Initech"]
    assert result.safety is not None and result.kept_database == ""
    print("downtime", result.downtime)
    # The safety snapshot holds the rows as they were just before the restore.
    service.restore_snapshot(plant, result.safety.name, username="tester")
    assert _companies(plant) == changed


def test_page(plant):
    client = Client()
    select(client, plant)
    sign_in(client, ADMIN[0], ADMIN[1])
    r = client.post("/snapshots/create", {"note": "via page"})
    assert r.status_code == 302
    page = client.get("/snapshots/").content.decode()
    assert ".pgdump" in page
