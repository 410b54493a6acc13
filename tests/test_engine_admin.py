"""The engines page (/admin/engines/): admin-only listing, Dispose and Dispose all idle."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditEntry
from dbselect import engines, state
from dbselect.engines import workers as engine_store
from dbselect.engines.session_counts import count_sessions
from tests.helpers import messages_of, select, sign_in

URL = "/admin/engines/"


@pytest.fixture(autouse=True)
def _own_store(tmp_path, settings):
    """Give each test its own shared engine store."""
    settings.DBSELECT = {
        **settings.DBSELECT,
        "ENGINE_STORE_DIR": tmp_path / "engines",
        "ENGINE_REFRESH_WAIT": 0,
    }
    yield
    engine_store.reset_store()


@pytest.fixture
def admin_client(make_database):
    # databases/default of the test's folder: its admins are operators (dbselect.permissions).
    path = make_database(name="Plant A", users=[("boss", "pw-boss-123", True)], label="default")
    client = Client()
    select(client, path)
    sign_in(client, "boss", "pw-boss-123")
    return client, str(path)


def test_admin_sees_the_engine_of_their_database(admin_client):
    client, path = admin_client
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Plant A" in html
    assert path in html
    assert engines.register(path).alias in html
    assert ">WAL<" in html.replace(" <", "<")
    assert 'class="engines-link"' in html
    assert "Memory per alias" in html and "this request" in html


def test_engine_row_counts_the_sessions_on_it(admin_client, make_database):
    client, path = admin_client
    other = Client()
    select(other, path)
    row = _row(client.get(URL).content.decode(), path)
    assert '<td class="sessions">2</td>' in row
    assert count_sessions().for_path(path) == 2


def test_non_admin_gets_403_everywhere(make_database):
    path = make_database(users=[("worker", "pw-worker-123", False)])
    client = Client()
    select(client, path)
    sign_in(client, "worker", "pw-worker-123")
    assert client.get(URL).status_code == 403
    assert client.post(URL + "dispose", {"path": str(path)}).status_code == 403
    assert client.post(URL + "dispose-idle").status_code == 403
    assert "engines-link" not in client.get("/").content.decode()
    assert engines.get(str(path)) is not None


def test_anonymous_gets_403(make_database):
    path = make_database()
    client = Client()
    select(client, path)
    assert client.get(URL).status_code == 403
    assert client.post(URL + "dispose", {"path": str(path)}).status_code == 403


def test_dispose_needs_a_post_with_csrf(admin_client):
    client, path = admin_client
    assert client.get(URL + "dispose").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies
    assert strict.post(URL + "dispose", {"path": path}).status_code == 403
    assert engines.get(path) is not None


def test_dispose_forgets_the_engine_and_the_session_reopens_it(admin_client, make_database):
    client, path = admin_client
    other = str(make_database(name="Plant B"))
    engines.validate_and_register(other)
    response = client.post(URL + "dispose", {"path": other}, follow=True)
    assert any("Disposed Plant B" in m for m in messages_of(response))
    assert engines.get(other) is None
    assert other not in response.content.decode()
    # Disposing the admin's own database: the next request simply re-opens it.
    client.post(URL + "dispose", {"path": path})
    assert client.get("/").status_code == 200
    assert engines.get(path) is not None
    with state.override(engines.get(path).alias):
        entry = AuditEntry.objects.filter(action="engine.dispose").order_by("-id").first()
    assert entry.target == path
    assert entry.username == "boss"


def test_dispose_unknown_path_says_so(admin_client):
    client, _ = admin_client
    response = client.post(URL + "dispose", {"path": "/nowhere/x.sqlite"}, follow=True)
    assert any("not in the engine cache" in m for m in messages_of(response))


def test_dispose_all_idle_keeps_recently_used_engines(admin_client, make_database, settings):
    client, path = admin_client
    idle = str(make_database(name="Quiet"))
    engines.validate_and_register(idle)
    engines.get(idle).last_used -= 3600
    settings.DBSELECT = {**settings.DBSELECT, "ENGINE_IDLE_SECONDS": 600}
    page = client.get(URL).content.decode()
    assert "Dispose all idle (" in page
    response = client.post(URL + "dispose-idle", follow=True)
    assert any("Disposed" in m and "idle engine" in m for m in messages_of(response))
    assert engines.get(idle) is None
    assert engines.get(path) is not None


def test_dispose_requested_by_another_process_applies_before_next_use(admin_client):
    client, path = admin_client
    engine = engines.get(path)
    # What another worker's Dispose button writes into the shared store.
    engine_store.EngineStore(engine_store.get_store().folder).record_disposals([path])
    assert client.get("/").status_code == 200
    assert engines.get(path) is not engine


def _row(html: str, path: str) -> str:
    start = html.index(f'data-path="{path}"')
    return html[start : html.index("</tr>", start)]
