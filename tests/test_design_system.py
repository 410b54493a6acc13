"""The interface's shared pieces: header, navigation, forms, admin branding, robots/favicon."""

from __future__ import annotations

import re

import pytest
from django import forms
from django.template.loader import render_to_string
from django.test import Client

from tests.helpers import select, sign_in


def _header(page: str) -> str:
    return page[page.index('<header class="site-header">') : page.index("</header>")]


@pytest.mark.parametrize(
    ("url", "content_type"),
    [("/robots.txt", "text/plain; charset=utf-8"), ("/favicon.ico", "image/x-icon")],
)
def test_robots_and_favicon_answer_without_a_selection(url, content_type):
    response = Client().get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    if url == "/robots.txt":
        assert response.content.decode() == "User-agent: *\nDisallow: /\n"
    else:
        assert response.content.startswith(b"\x00\x00\x01\x00")  # an ICO container


def test_header_names_the_database_and_tells_same_named_ones_apart(make_database):
    north = make_database(name="Plant", label="north", users=[("al", "pw", False)])
    south = make_database(name="Plant", label="south", users=[("al", "pw", False)])
    headers = []
    for path in (north, south):
        client = Client()
        select(client, path)
        sign_in(client, "al", "pw")
        header = _header(client.get("/companies/").content.decode())
        assert "<strong>Plant</strong>" in header
        assert f'title="{path}"' in header
        headers.append(header)
    assert '<span class="db-label">north</span>' in headers[0]
    assert '<span class="db-label">south</span>' in headers[1]
    assert headers[0] != headers[1]


def test_header_shows_the_path_of_a_file_outside_the_scanned_folder(make_database):
    path = make_database(name="Loose", users=[("al", "pw", False)])
    client = Client()
    select(client, path)
    sign_in(client, "al", "pw")
    header = _header(client.get("/").content.decode())
    assert "<strong>Loose</strong>" in header
    assert str(path).split("/")[-2] in header  # its folder: the path, not only the name


def test_current_navigation_item_is_marked(make_database):
    client = Client()
    select(client, make_database(users=[("al", "pw", False)]))
    sign_in(client, "al", "pw")
    companies = _header(client.get("/companies/").content.decode())
    assert re.search(r'<a aria-current="page" href="/companies/">Companies</a>', companies)
    assert companies.count('aria-current="page"') == 1
    projects = _header(client.get("/projects/").content.decode())
    assert '<a aria-current="page" href="/projects/">Projects</a>' in projects
    assert 'aria-current="page" href="/companies/"' not in projects
    # The user menu: the username, and signing out is a POST form.
    assert '<form method="post" action="/logout/">' in projects
    assert "Log out al</button>" in projects


def test_admin_is_branded_and_names_the_database(make_database):
    path = make_database(name="Plant West", label="west", users=[("boss", "pw", True)])
    anonymous, client = Client(), Client()
    select(anonymous, path)
    select(client, path)
    sign_in(client, "boss", "pw")
    for url, response in [
        ("/admin/login/", anonymous.get("/admin/login/")),
        ("/admin/", client.get("/admin/")),
        ("/admin/password_change/", client.get("/admin/password_change/")),
    ]:
        assert response.status_code == 200, url
        page = response.content.decode()
        assert "NukeWorks administration" in page, url
        assert "Database: <strong>Plant West</strong>" in page, url
        assert '<span class="nw-admin-db-label">west</span>' in page, url


class _Sample(forms.Form):
    name = forms.CharField(help_text="As on the company's letterhead.")
    note = forms.CharField(required=False)


def test_form_errors_sit_next_to_their_field():
    html = str(_Sample(data={"name": "", "note": "x"}))
    name_field = html[html.index('<div class="form-field has-error') :]
    name_field = name_field[: name_field.index('<div class="form-field', 1)]
    # Label above with the required marker, then the field, its error, its help text.
    label = name_field.index('<label for="id_name">Name<span class="required-marker"')
    field = name_field.index('<input type="text" name="name"')
    error = name_field.index('<ul class="errorlist" id="id_name_error"><li>This field is required.')
    helptext = name_field.index('<div class="helptext" id="id_name_helptext">')
    assert label < field < error < helptext
    assert 'aria-invalid="true"' in name_field
    assert 'aria-describedby="id_name_helptext id_name_error"' in name_field
    # The optional field has no marker and no error.
    note = html[html.index('<label for="id_note">') :]
    assert note.startswith('<label for="id_note">Note</label>')
    assert "errorlist" not in note


def test_error_pages_use_the_design_system(make_database):
    client = Client()
    select(client, make_database(name="Plant East", users=[("al", "pw", False)]))
    sign_in(client, "al", "pw")
    missing = client.get("/no-such-page/")
    assert missing.status_code == 404
    page = missing.content.decode()
    assert "Database: <strong>Plant East</strong>" in page  # the site's header
    assert '<div class="card">' in page and "Not found" in page
    # The 500 page renders without a request (nothing that could fail again).
    assert "Something went wrong" in render_to_string("500.html")


def test_manage_menu_marks_the_current_admin_page(make_database):
    client = Client()
    select(client, make_database(users=[("boss", "pw", True)]))
    sign_in(client, "boss", "pw")
    details = _header(client.get("/database/").content.decode())
    assert '<summary class="is-current">Manage</summary>' in details
    assert '<a aria-current="page" class="details-link" href="/database/">' in details
    companies = _header(client.get("/companies/").content.decode())
    assert "<summary>Manage</summary>" in companies
