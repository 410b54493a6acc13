"""Request-local routing: each session sees only its own database."""

from __future__ import annotations

from django.test import Client

from dbselect import state
from dbselect.routers import SessionRouter
from nukeworks.companies.models import Company
from tests.helpers import select, sign_in


def test_router_follows_the_active_alias():
    router = SessionRouter()
    assert router.db_for_read(Company) is None
    with state.override("alias_a"):
        assert router.db_for_read(Company) == "alias_a"
        assert router.db_for_write(Company) == "alias_a"
        with state.override("alias_b"):
            assert router.db_for_write(Company) == "alias_b"
        assert router.db_for_read(Company) == "alias_a"
    assert state.get_active_alias() is None


def test_two_sessions_on_two_databases_see_only_their_own_companies(make_database):
    site_a = make_database(
        name="Site A", companies=["Alpha Nuclear"], users=[("ann", "pw-a", False)]
    )
    site_b = make_database(
        name="Site B", companies=["Beta Reactors"], users=[("bob", "pw-b", False)]
    )
    client_a, client_b = Client(), Client()
    select(client_a, site_a)
    select(client_b, site_b)
    sign_in(client_a, "ann", "pw-a")
    sign_in(client_b, "bob", "pw-b")

    page_a = client_a.get("/companies/").content.decode()
    page_b = client_b.get("/companies/").content.decode()

    assert "Alpha Nuclear" in page_a and "Beta Reactors" not in page_a
    assert "Beta Reactors" in page_b and "Alpha Nuclear" not in page_b
    assert state.get_active_alias() is None


def test_writes_land_in_the_sessions_own_file(make_database):
    site_a = make_database(name="Site A", users=[("ann", "pw", False)])
    site_b = make_database(name="Site B", users=[("ann", "pw", False)])
    client = Client()
    select(client, site_a)
    sign_in(client, "ann", "pw")
    response = client.post("/companies/new/", {"name": "Written In A", "country": "X"})
    assert response.status_code == 302

    select(client, site_b)
    assert ">Written In A</a>" not in client.get("/companies/").content.decode()
    select(client, site_a)
    assert ">Written In A</a>" in client.get("/companies/").content.decode()
