"""schemathesis against /api/schema/ and the live app: no server error, nothing off-schema.

The shipped server (gunicorn, 1 worker x 4 threads here) on a catalog database `default` (the
operator database, so every endpoint is reachable) with an admin's token. Bounded: a fixed
number of examples per operation and a fixed seed, so the run takes seconds, and a failure
reproduces. Token sign-in and revocation are left out: revoking the run's own token would stop
the rest of the run (they have their own tests in test_api_tokens.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.live import GunicornServer, set_password

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
PASSWORD = "pw-schemathesis-123"
EXAMPLES_PER_OPERATION = 10
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
)


@pytest.fixture
def server(tmp_path, make_database):
    root = tmp_path / "server"
    folder = root / "databases" / "default"
    folder.mkdir(parents=True)
    path = make_database(
        name="Default",
        companies=["Acme", "Bolt"],
        users=[("ann", PASSWORD, True)],
        path=folder / "nukeworks.sqlite",
    )
    set_password(path, "ann", PASSWORD)
    # Throttles are not what this run examines (they are documented as 429 all the same).
    limits = {"API_THROTTLE_TOKEN": "1000000/min", "API_THROTTLE_ANON": "1000000/min"}
    live = GunicornServer(root, workers=1, threads=4, env=limits).start()
    try:
        yield live
    finally:
        live.stop()


def test_schemathesis_finds_no_server_error_and_no_response_off_the_schema(server, tmp_path):
    request = urllib.request.Request(
        server.base + "/api/v1/databases/default/auth/token",
        data=json.dumps({"username": "ann", "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        token = json.loads(response.read())["token"]
    config = tmp_path / "schemathesis.toml"
    # Every {db} is the catalog database of this server (random labels only meet 404s).
    config.write_text('[parameters]\n"path.db" = "default"\n')
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "run",
            server.base + "/api/schema/",
            "--url",
            server.base,
            "--header",
            f"Authorization: Token {token}",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            "20261125",
            "--exclude-path-regex",
            "auth/token",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        # Its cache and reports go to the test's own folder, never into the checkout.
        cwd=tmp_path,
    )
    report = run.stdout[-8000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert "passed" in run.stdout and "failures" not in run.stdout.split("SUMMARY")[-1], report
