"""/readyz: every check named in a JSON body; 503 naming the check that fails.

Real requests through the whole middleware stack (no database selected: the probe of a load
balancer has no session), a real queue worker process (`manage.py run_huey`), a real
instance folder made unwritable, and a real gunicorn server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.test import Client

from tests.live import REPO, GunicornServer, free_port
from tests.test_provisioning_worker import Consumer

CHECKS = {"instance", "databases", "worker"}


def _readyz(client: Client | None = None) -> tuple[int, dict]:
    response = (client or Client()).get("/readyz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


@pytest.fixture
def consumer(tmp_path):
    started: list[Consumer] = []

    def start() -> Consumer:
        started.append(Consumer(tmp_path).start())
        return started[-1]

    yield start
    for one in started:
        one.kill()


def test_ready_with_every_check_listed(consumer):
    consumer()
    status, body = _readyz()
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["failed"] == []
    assert set(body["checks"]) == CHECKS
    for name, check in body["checks"].items():
        assert check["status"] == "ok", name
        assert isinstance(check["ms"], float)


def test_not_ready_when_the_worker_stops(consumer):
    running = consumer()
    assert _readyz()[0] == 200
    running.stop()  # graceful, as `make run` stops it
    status, body = _readyz()
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["failed"] == ["worker"]
    assert body["checks"]["worker"]["status"] == "fail"
    assert "run_huey" in body["checks"]["worker"]["detail"]
    assert body["checks"]["instance"]["status"] == "ok"

    # A worker killed outright (its announcement stays behind) is not alive either.
    consumer().kill()
    status, body = _readyz()
    assert (status, body["failed"]) == (503, ["worker"])


def _unwritable_instance(folder: Path) -> str:
    """Make `folder` refuse new files; return how. As root, chmod does not stop writes, so the
    folder is then replaced by a regular file of the same name (nothing can be created in it)."""
    folder.mkdir()
    folder.chmod(0o555)
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except PermissionError:
        return "chmod 0555"
    probe.unlink()
    folder.chmod(0o755)
    folder.rmdir()
    folder.write_text("the instance folder is a file now\n")
    return "replaced by a file"


def test_not_ready_when_the_instance_folder_is_read_only(tmp_path, settings):
    settings.NUKEWORKS_READYZ_WORKER = False
    instance = tmp_path / "instance"
    settings.INSTANCE_DIR = instance
    instance.mkdir()
    assert _readyz()[0] == 200
    instance.rmdir()
    how = _unwritable_instance(instance)
    try:
        status, body = _readyz()
    finally:
        if instance.is_dir():
            instance.chmod(0o755)
    assert status == 503, how
    assert body["failed"] == ["instance"], how
    detail = body["checks"]["instance"]["detail"]
    assert detail.startswith("the instance folder is not writable: "), detail
    # The public answer names no path.
    assert str(tmp_path) not in json.dumps(body)
    assert body["checks"]["databases"]["status"] == "ok"


def test_not_ready_when_the_databases_folder_is_missing(settings, tmp_path):
    settings.NUKEWORKS_READYZ_WORKER = False
    settings.DBSELECT = {**settings.DBSELECT, "DATABASES_DIR": tmp_path / "gone"}
    status, body = _readyz()
    assert (status, body["failed"]) == (503, ["databases"])
    assert "not readable" in body["checks"]["databases"]["detail"]


class _FakeRedis:
    """A TCP server answering the Redis protocol: +PONG to PING, +OK to anything else."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.pings = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buffer += data
                # Each command is an array: *N\r\n then N bulk strings.
                while buffer.startswith(b"*"):
                    lines = buffer.split(b"\r\n")
                    count = int(lines[0][1:])
                    if len(lines) < 1 + 2 * count + 1:
                        break
                    words = lines[2 : 2 + 2 * count : 2]
                    buffer = b"\r\n".join(lines[1 + 2 * count :])
                    if words and words[0].upper() == b"PING":
                        self.pings += 1
                        conn.sendall(b"+PONG\r\n")
                    else:
                        conn.sendall(b"+OK\r\n")

    def close(self) -> None:
        self.sock.close()


def test_redis_is_checked_when_configured(settings):
    settings.NUKEWORKS_READYZ_WORKER = False
    settings.REDIS_URL = ""
    assert "redis" not in _readyz()[1]["checks"]

    fake = _FakeRedis()
    try:
        settings.REDIS_URL = f"redis://127.0.0.1:{fake.port}/0"
        status, body = _readyz()
        assert status == 200, body
        assert body["checks"]["redis"]["status"] == "ok"
        assert fake.pings == 1
    finally:
        fake.close()

    settings.REDIS_URL = f"redis://:secret-pw@127.0.0.1:{free_port()}/0"
    status, body = _readyz()
    assert (status, body["failed"]) == (503, ["redis"])
    assert "Unable to connect to Redis" in body["checks"]["redis"]["detail"]
    assert "secret-pw" not in json.dumps(body)


def test_more_checks_from_settings(settings):
    """The hook for PostgreSQL: any django-health-check class, by dotted path and options."""
    settings.NUKEWORKS_READYZ_WORKER = False
    settings.NUKEWORKS_READYZ_CHECKS = [
        ("cache", "health_check.checks.Cache", {"alias": "ratelimit"}),
        ("missing-db", "health_check.checks.Database", {"alias": "no-such-alias"}),
    ]
    status, body = _readyz()
    assert status == 503
    assert body["failed"] == ["missing-db"]
    assert body["checks"]["cache"]["status"] == "ok"


def test_readyz_needs_no_database_and_is_never_redirected(settings):
    settings.NUKEWORKS_READYZ_WORKER = False
    settings.SECURE_SSL_REDIRECT = True  # production: plain HTTP goes to HTTPS, not the probe
    client = Client()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert client.get("/companies/").status_code == 301
    assert client.get("/healthz").status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    assert "sessionid" not in response.cookies


def test_readyz_under_gunicorn(tmp_path):
    """The shipped server, its own instance folder, no worker running: 503 naming it."""
    server = GunicornServer(tmp_path / "server", workers=1).start()
    try:
        try:
            with urllib.request.urlopen(server.base + "/readyz", timeout=10) as response:
                status, body = response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            status, body = exc.code, json.loads(exc.read())
        assert status == 503
        assert body["failed"] == ["worker"]
        assert set(body["checks"]) == CHECKS
    finally:
        server.stop()

    ready = GunicornServer(
        tmp_path / "web-only", workers=1, env={"NUKEWORKS_READYZ_WORKER": "false"}
    ).start()
    try:
        with urllib.request.urlopen(ready.base + "/readyz", timeout=10) as response:
            assert response.status == 200
            assert set(json.loads(response.read())["checks"]) == {"instance", "databases"}
    finally:
        ready.stop()


def test_the_same_checks_from_the_shell(tmp_path):
    """django-health-check's command runs /readyz's checks: exit 1 naming the failed one."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
        "NUKEWORKS_INSTANCE_DIR": str(tmp_path / "instance"),
        "NUKEWORKS_DATABASES_DIR": str(tmp_path),
        "NUKEWORKS_DEFAULT_DB": str(tmp_path / "default.sqlite"),
        "SESSION_FILE_PATH": str(tmp_path / "sessions"),
        "DBSELECT_REGISTER_SCANNED": "false",
    }
    command = [sys.executable, "manage.py", "health_check", "readyz", "--no-http"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert "WorkerAlive(): Unavailable: no task queue worker" in result.stdout
    assert "InstanceWritable(): OK" in result.stdout

    env["NUKEWORKS_READYZ_WORKER"] = "false"
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WorkerAlive" not in result.stdout
