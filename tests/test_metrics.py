"""/metrics: Prometheus metrics per database, refused to everyone but admins, a token or an
allowed address; requests through the whole middleware stack on real files.

Counters are process-wide (the test process is one "worker"): each test compares the values
before and after its own traffic, on databases with labels of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from dbselect import engines
from dbselect.engines import workers as engine_workers
from snapshots import service as snapshot_service
from tests.helpers import select, sign_in

TOKEN = "metrics-token-0123456789"


@pytest.fixture(autouse=True)
def _metrics_settings(tmp_path, settings) -> Iterator[None]:
    settings.NUKEWORKS_METRICS = {"ENABLED": True, "TOKEN": TOKEN, "ALLOW": []}
    settings.DBSELECT = {**settings.DBSELECT, "ENGINE_STORE_DIR": tmp_path / "engines"}
    yield
    engine_workers.reset_store()


def samples(body: str) -> dict[tuple[str, frozenset], float]:
    """Return {(sample name, labels): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def scrape() -> dict[tuple[str, frozenset], float]:
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


def value(data, name: str, **labels: str) -> float:
    return data.get((name, frozenset(labels.items())), 0.0)


def _admin(make_database, label: str | None = None, **kwargs) -> tuple[Client, Path]:
    path = make_database(label=label, users=[("boss", "pw-boss-123", True)], **kwargs)
    client = Client()
    select(client, path)
    sign_in(client, "boss", "pw-boss-123")
    return client, path


def test_anonymous_clients_are_refused_with_401(make_database):
    assert Client().get("/metrics").status_code == 401
    response = Client().get("/metrics")
    assert response["WWW-Authenticate"].startswith("Bearer")
    path = make_database()
    client = Client()
    select(client, path)  # a database but no sign-in
    assert client.get("/metrics").status_code == 401
    assert b"nukeworks_" not in client.get("/metrics").content


def test_a_signed_in_user_who_is_not_an_admin_gets_403(make_database):
    path = make_database(users=[("clerk", "pw-clerk-123", False)])
    client = Client()
    select(client, path)
    sign_in(client, "clerk", "pw-clerk-123")
    response = client.get("/metrics")
    assert response.status_code == 403
    assert b"nukeworks_" not in response.content


def test_a_wrong_token_is_refused_even_to_an_admin(make_database):
    client, _ = _admin(make_database)
    assert client.get("/metrics").status_code == 200
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert Client().get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_no_token_is_accepted_when_none_is_configured(settings):
    settings.NUKEWORKS_METRICS = {"TOKEN": "", "ALLOW": []}
    assert Client().get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert Client().get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401


def test_the_token_and_the_allow_list_open_it_without_a_session(settings):
    ok = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and b"nukeworks_http_requests_total" in ok.content
    settings.NUKEWORKS_METRICS = {"TOKEN": "", "ALLOW": ["10.0.0.0/8"]}
    assert Client().get("/metrics").status_code == 401  # the test client is 127.0.0.1
    settings.NUKEWORKS_METRICS = {"TOKEN": "", "ALLOW": ["10.0.0.0/8", "127.0.0.1"]}
    assert Client().get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.7").get("/metrics").status_code == 401


def test_an_admin_of_the_current_database_may_read_it(make_database):
    client, _ = _admin(make_database)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "nukeworks_db_queries_total" in response.content.decode()


def test_two_databases_have_their_own_series(make_database):
    alpha, _ = _admin(make_database, label="m-alpha", companies=["A1", "A2"])
    beta, _ = _admin(make_database, label="m-beta")
    before = scrape()
    for _ in range(3):
        assert alpha.get("/companies/").status_code == 200
    for _ in range(2):
        assert beta.get("/companies/").status_code == 200
    assert beta.get("/companies/999999/").status_code == 404
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("nukeworks_http_requests_total", database="m-alpha", status="2xx") == 3
    assert delta("nukeworks_http_requests_total", database="m-beta", status="2xx") == 2
    assert delta("nukeworks_http_requests_total", database="m-beta", status="4xx") == 1
    assert delta("nukeworks_http_request_duration_seconds_count", database="m-alpha") == 3
    assert delta("nukeworks_http_errors_total", database="m-alpha") == 0
    assert delta("nukeworks_db_queries_total", database="m-alpha") > 0
    assert delta("nukeworks_db_queries_total", database="m-beta") > 0
    assert delta("nukeworks_db_query_seconds_total", database="m-alpha") > 0
    # Open engines and connections, from the worker tables.
    assert value(after, "nukeworks_engine_workers", database="m-alpha") == 1
    assert value(after, "nukeworks_engine_workers", database="m-beta") == 1
    assert ("nukeworks_db_connections_open", frozenset({("database", "m-alpha")})) in after
    assert value(after, "nukeworks_workers") >= 1


def test_a_database_outside_the_catalog_is_named_by_its_alias_never_its_path(make_database):
    client, path = _admin(make_database, name="Typed path")
    assert client.get("/companies/").status_code == 200
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    body = response.content.decode()
    alias = engines.get(str(path)).alias
    assert alias.startswith("nw_")
    assert f'database="{alias}"' in body
    assert str(path) not in body and str(path.parent) not in body


def test_slow_queries_and_snapshots_are_counted_per_database(make_database, settings):
    client, path = _admin(make_database, label="m-gamma")
    before = scrape()
    settings.DBSELECT = {**settings.DBSELECT, "SLOW_QUERY_MS": 0}
    assert client.get("/companies/").status_code == 200
    settings.DBSELECT = {**settings.DBSELECT, "SLOW_QUERY_MS": 1000}
    snapshot_service.create_snapshot(str(path), note="metrics test")
    after = scrape()
    slow = value(after, "nukeworks_db_slow_queries_total", database="m-gamma") - value(
        before, "nukeworks_db_slow_queries_total", database="m-gamma"
    )
    assert slow > 0
    labels = {"database": "m-gamma", "operation": "create", "outcome": "ok"}
    taken = value(after, "nukeworks_snapshot_duration_seconds_count", **labels) - value(
        before, "nukeworks_snapshot_duration_seconds_count", **labels
    )
    assert taken == 1


def test_a_failed_restore_is_counted_as_failed(make_database):
    _, path = _admin(make_database, label="m-delta")
    before = scrape()
    with pytest.raises(snapshot_service.SnapshotError):
        snapshot_service.restore_snapshot(str(path), "no-such-snapshot.sqlite")
    after = scrape()
    labels = {"database": "m-delta", "operation": "restore", "outcome": "failed"}
    name = "nukeworks_snapshot_duration_seconds_count"
    assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_metrics_off_answers_404(settings):
    settings.NUKEWORKS_METRICS = {"ENABLED": False, "TOKEN": TOKEN}
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404


def test_jobs_of_the_task_queue_are_timed_by_job_and_database(make_database):
    from types import SimpleNamespace

    from metrics import instruments

    path = make_database(label="m-jobs")
    before = scrape()
    build = SimpleNamespace(id="job-1", name="build_database", args=("m-jobs", "job-1"))
    check = SimpleNamespace(id="job-2", name="full_check", args=(str(path), "job-2"))
    for task, end in ((build, "complete"), (check, "error")):
        instruments.on_job_signal("executing", task)
        instruments.on_job_signal(end, task)
    after = scrape()
    name = "nukeworks_job_duration_seconds_count"
    built = {"job": "build_database", "database": "m-jobs", "outcome": "ok"}
    checked = {"job": "full_check", "database": "m-jobs", "outcome": "error"}
    assert value(after, name, **built) - value(before, name, **built) == 1
    assert value(after, name, **checked) - value(before, name, **checked) == 1


def test_an_invalid_allow_list_entry_fails_the_checks(settings):
    from metrics.checks import check_allow_list

    settings.NUKEWORKS_METRICS = {"ALLOW": ["127.0.0.1", "10.0.0.0/8", "::1"]}
    assert check_allow_list() == []
    settings.NUKEWORKS_METRICS = {"ALLOW": ["127.0.0.1", "not-an-address"]}
    assert [e.id for e in check_allow_list()] == ["metrics.E001"]
