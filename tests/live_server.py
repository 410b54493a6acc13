"""A real gunicorn server (`make run`'s gunicorn.conf.py, test settings) for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """Return a free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(work: Path, databases: Path, **extra: str) -> dict[str, str]:
    """Environment for a server whose machine-local state lives under `work`."""
    return {
        **os.environ,
        # The test settings: same hashers as the files the fixtures wrote.
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "NUKEWORKS_LIVE_SERVER": "1",
        "NUKEWORKS_DATABASES_DIR": str(databases),
        "NUKEWORKS_INSTANCE_DIR": str(work / "instance"),
        "NUKEWORKS_DEFAULT_DB": str(work / "default.sqlite"),
        "SESSION_FILE_PATH": str(work / "instance" / "sessions"),
        "SECRET_KEY": "live-server-tests-only",
        "NUKEWORKS_ACCESS_LOG": "",
        **extra,
    }


@contextlib.contextmanager
def gunicorn(
    work: Path, databases: Path, *, workers: int = 1, threads: int = 2, **extra: str
) -> Iterator[str]:
    """Serve NukeWorks with gunicorn on a free loopback port; yield its base URL."""
    port = free_port()
    env = server_env(
        work, databases, NUKEWORKS_BIND=f"127.0.0.1:{port}", NUKEWORKS_WORKERS=str(workers),
        NUKEWORKS_THREADS=str(threads), **extra,
    )
    with open(work / f"gunicorn-{port}.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "nukeworks" / "gunicorn.conf.py")],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "gunicorn did not start: " + (work / f"gunicorn-{port}.log").read_text()
                    ) from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
