"""The API under the shipped server: two tokens of two databases, many threads, no leaks.

Two real gunicorn worker processes (the shipped settings: 2 workers x 4 threads); 8 client
threads, each alternating the token of database Alpha and the token of database Beta for 200+
requests; every answer must hold only the rows of the database the token belongs to.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from tests.live import GunicornServer, set_password

THREADS = 8
REQUESTS_PER_THREAD = 240
PASSWORD = "pw-live-api-123"


def _call(base: str, path: str, token: str | None = None, data: dict | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(base + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def server(tmp_path, make_database):
    root = tmp_path / "server"
    databases = root / "databases"
    for label, company in (("alpha", "Acme Alpha"), ("beta", "Bolt Beta")):
        folder = databases / label
        folder.mkdir(parents=True)
        path = make_database(
            name=label.title(),
            companies=[company, f"{company} Two"],
            users=[("ann", PASSWORD, True)],
            path=folder / "nukeworks.sqlite",
        )
        set_password(path, "ann", PASSWORD)
    # The per-token throttle is not what this test measures: lift it above the load it makes.
    live = GunicornServer(
        root, workers=2, threads=4, env={"API_THROTTLE_TOKEN": "1000000/min"}
    ).start()
    try:
        yield live
    finally:
        live.stop()


def test_two_tokens_of_two_databases_in_parallel_threads_only_see_their_own_rows(server):
    tokens = {}
    for label in ("alpha", "beta"):
        status, body = _call(
            server.base,
            f"/api/v1/databases/{label}/auth/token",
            data={"username": "ann", "password": PASSWORD},
        )
        assert status == 201, body
        tokens[label] = body["token"]
    expected = {
        "alpha": {"Acme Alpha", "Acme Alpha Two"},
        "beta": {"Bolt Beta", "Bolt Beta Two"},
    }
    problems: list[str] = []
    served = [0] * THREADS

    def client(index: int) -> None:
        for i in range(REQUESTS_PER_THREAD):
            label = ("alpha", "beta")[(index + i) % 2]
            status, body = _call(
                server.base, f"/api/v1/databases/{label}/companies/", tokens[label]
            )
            names = {c["name"] for c in body["results"]} if status == 200 else None
            if status != 200 or names != expected[label]:
                problems.append(f"{label}: {status} {body}")
                return
            served[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    assert served == [REQUESTS_PER_THREAD] * THREADS


def test_a_token_of_alpha_on_betas_url_gets_401_from_the_live_server(server):
    status, body = _call(
        server.base,
        "/api/v1/databases/alpha/auth/token",
        data={"username": "ann", "password": PASSWORD},
    )
    assert status == 201
    status, body = _call(server.base, "/api/v1/databases/beta/companies/", body["token"])
    assert status == 401
    assert body["error"]["code"] == "authentication_failed"
