"""The spec's flow: anonymous -> /select-db -> /login -> application."""

from __future__ import annotations

from django.test import Client

from tests.helpers import select, sign_in


def test_anonymous_visitor_is_sent_to_the_selector(client):
    response = client.get("/companies/")
    assert response.status_code == 302
    assert response["Location"] == "/select-db?next=%2Fcompanies%2F"


def test_login_page_also_needs_a_selected_database(client):
    response = client.get("/login/")
    assert response.status_code == 302
    assert response["Location"].startswith("/select-db")


def test_selector_health_and_static_work_without_a_database(client):
    assert client.get("/select-db").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/static/css/app.css").status_code == 200


def test_full_flow_select_then_login_then_app(make_database):
    path = make_database(name="Plant North", companies=["Acme"], users=[("alice", "s3cret", False)])
    client = Client()
    first = client.get("/companies/")
    assert first["Location"].startswith("/select-db")

    chosen = client.post("/select-db", {"path": str(path), "next": "/companies/"})
    assert chosen.status_code == 302
    assert chosen["Location"] == "/login/?next=%2Fcompanies%2F"

    login_page = client.get(chosen["Location"])
    assert login_page.status_code == 200
    assert "Plant North" in login_page.content.decode()

    signed_in = client.post(
        "/login/", {"username": "alice", "password": "s3cret", "next": "/companies/"}
    )
    assert signed_in["Location"] == "/companies/"
    page = client.get("/companies/").content.decode()
    assert "Acme" in page
    assert 'class="database-link" href="/select-db">Database</a>' in page


def test_home_shows_name_path_and_counts(make_database):
    path = make_database(name="Plant South", companies=["A1", "A2"], users=[("al", "pw", False)])
    client = Client()
    select(client, path)
    sign_in(client, "al", "pw")
    page = client.get("/").content.decode()
    assert "Plant South" in page
    assert str(path) in page
    assert '<span class="num" id="company-count">2</span>' in page


def test_anonymous_header_has_no_database_link(make_database):
    client = Client()
    select(client, make_database())
    page = client.get("/login/").content.decode()
    assert 'class="database-link"' not in page
