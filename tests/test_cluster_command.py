"""`make cluster` / `make cluster-stop` for real (python -m nukeworks.cluster start / stop).

In a temporary instance folder on free loopback ports: PostgreSQL, Redis, the queue worker,
two gunicorn app servers and HAProxy start; HAProxy answers /select-db through both servers
in turn (its X-Served-By header) and through the other alone once one stops; a second start
refuses and starts nothing; stop ends
exactly the recorded processes (gunicorn's workers with their master), leaves a pid that now
belongs to another program alone, and keeps the data folders.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nukeworks.cluster import control, services
from tests.helpers import wait_for
from tests.live import REPO, free_port

pytestmark = pytest.mark.skipif(
    bool(services.missing_packages()),
    reason=f"Debian packages missing: {' '.join(services.missing_packages())}",
)


def _cluster(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nukeworks.cluster", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def cluster_env() -> Iterator[dict[str, str]]:
    """The environment of a cluster in a temporary folder; whatever it left running is stopped.

    Not under pytest's tmp_path: every pytest session that starts (other runs on the machine)
    makes /tmp/pytest-of-<user> 0700 again, which locks out the `postgres` user PostgreSQL
    runs as (tests/services.py uses its own temporary folders for the same reason).
    """
    root = Path(tempfile.mkdtemp(prefix="nukeworks-cluster-test-"))
    for name in ("instance", "databases"):
        (root / name).mkdir(parents=True)
    ports = {name: free_port() for name in ("balancer", "app1", "app2", "pg", "redis", "stats")}
    env = {
        **os.environ,
        "NUKEWORKS_INSTANCE_DIR": str(root / "instance"),
        "NUKEWORKS_DATABASES_DIR": str(root / "databases"),
        "NUKEWORKS_DEFAULT_DB": str(root / "databases" / "default" / "nukeworks.sqlite"),
        "NUKEWORKS_ACCESS_LOG": "",
        "CLUSTER_PORT": str(ports["balancer"]),
        "CLUSTER_APP_PORTS": f"{ports['app1']},{ports['app2']}",
        "CLUSTER_POSTGRES_PORT": str(ports["pg"]),
        "CLUSTER_REDIS_PORT": str(ports["redis"]),
        "CLUSTER_STATS_PORT": str(ports["stats"]),
    }
    yield env
    plan = control.Plan(root / "instance")
    try:
        if plan.state_file.exists():
            control.stop(plan, say=lambda line: None)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _served_by(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.headers["X-Served-By"]


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(") ", 1)[1][:1] in "ZX"


def test_start_twice_refused_stop_exactly_what_was_started(cluster_env):
    started = _cluster(cluster_env, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    plan = control.Plan(Path(cluster_env["NUKEWORKS_INSTANCE_DIR"]))
    state = json.loads(plan.state_file.read_text())
    records = {r["name"]: r for r in state["processes"]}
    assert set(records) == {"postgresql", "redis", "worker", "app1", "app2", "haproxy"}
    assert all(control.still_ours(r) for r in records.values())
    balancer = f"http://127.0.0.1:{cluster_env['CLUSTER_PORT']}"
    assert state["urls"]["balancer"] == balancer + "/"
    assert balancer + "/" in started.stdout and "make cluster-stop" in started.stdout
    # No password on the way (the admin's, printed once by ensureadmin, is the exception).
    secrets = json.loads((plan.folder / "secrets.json").read_text())
    assert (plan.folder / "secrets.json").stat().st_mode & 0o777 == 0o600
    for password in secrets.values():
        assert password not in started.stdout + started.stderr
        assert password not in plan.state_file.read_text()

    # Round robin, no stickiness: consecutive requests alternate between the two servers.
    served = [_served_by(balancer + "/select-db") for _ in range(6)]
    assert set(served) == {"app1", "app2"}
    assert all(a != b for a, b in itertools.pairwise(served))
    for name in ("app1", "app2"):
        assert _served_by(f"http://127.0.0.1:{records[name]['port']}/readyz") is None
    assert state["catalog"] in ("registered", "absent")
    if state["catalog"] == "registered":
        listed = subprocess.run(
            [sys.executable, "manage.py", "catalog", "list"],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={**cluster_env, "REDIS_URL": state["redis_url"],
                 "DJANGO_SETTINGS_MODULE": "nukeworks.settings"},
        )  # fmt: skip
        assert control.CATALOG_LABEL in listed.stdout, listed.stdout + listed.stderr
        assert secrets[control.PG_ROLE] not in listed.stdout

    # A second start refuses and starts nothing.
    again = _cluster(cluster_env, "start")
    assert again.returncode == 3, again.stdout + again.stderr
    assert "already running" in again.stderr
    assert json.loads(plan.state_file.read_text()) == state

    workers = _children(records["app1"]["pid"]) + _children(records["app2"]["pid"])
    assert len(workers) >= 4  # the shipped 2 workers per server

    # One app server stops: HAProxy retries elsewhere (redispatch), then takes it out.
    os.kill(records["app1"]["pid"], signal.SIGTERM)
    assert wait_for(lambda: _gone(records["app1"]["pid"]), timeout=30)
    assert [_served_by(balancer + "/select-db") for _ in range(4)] == ["app2"] * 4
    stopped = _cluster(cluster_env, "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert all(_gone(r["pid"]) for r in records.values()), stopped.stdout
    assert all(_gone(pid) for pid in workers)
    assert not plan.state_file.exists()
    # Data folders stay for the next start.
    assert (plan.folder / "postgres" / "data" / "PG_VERSION").exists()
    assert any((plan.folder / "redis").iterdir())
    assert (plan.folder / "secrets.json").exists()


def test_stop_leaves_a_reused_pid_alone(cluster_env):
    """A recorded pid that now belongs to another process is not signalled."""
    plan = control.Plan(Path(cluster_env["NUKEWORKS_INSTANCE_DIR"]))
    plan.folder.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"])
    try:
        record = control.identify("app1", "app", other.pid, 1, plan.folder / "x.log")
        # Same pid, another start time: the process we recorded is gone, this is someone else.
        record["start_time"] -= 1
        plan.state_file.write_text(json.dumps({"processes": [record]}))
        stopped = _cluster(cluster_env, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert "was not running" in stopped.stdout
        assert other.poll() is None
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait(5)


def test_start_refuses_a_taken_balancer_port(cluster_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(cluster_env["CLUSTER_PORT"])))
        taken.listen()
        started = _cluster(cluster_env, "start")
    assert started.returncode == 1
    assert f"127.0.0.1:{cluster_env['CLUSTER_PORT']} is already in use" in started.stderr
    assert "CLUSTER_PORT=" in started.stderr
    plan = control.Plan(Path(cluster_env["NUKEWORKS_INSTANCE_DIR"]))
    assert not plan.state_file.exists()


def test_a_failed_start_stops_what_it_had_started(cluster_env):
    """PostgreSQL and Redis run when manage.py fails: both are stopped, nothing is recorded."""
    broken = {**cluster_env, "DB_CONN_MAX_AGE": "not-a-number"}  # every manage.py fails
    started = _cluster(broken, "start")
    assert started.returncode == 1, started.stdout + started.stderr
    assert "starting failed: stopping what was started" in started.stdout
    assert "postgresql" in started.stdout and "redis" in started.stdout
    plan = control.Plan(Path(cluster_env["NUKEWORKS_INSTANCE_DIR"]))
    assert not plan.state_file.exists()
    for variable in ("CLUSTER_POSTGRES_PORT", "CLUSTER_REDIS_PORT"):
        assert control.port_free(int(cluster_env[variable]))
