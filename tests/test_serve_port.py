"""`make run` (nukeworks/serve.sh) when gunicorn's address is taken: one line, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nukeworks import port_check

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "nukeworks" / "serve.sh"


def test_serve_refuses_a_taken_port_in_one_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {
            **os.environ,
            "NUKEWORKS_BIND": f"127.0.0.1:{port}",
            "VENV": str(Path(sys.executable).parent.parent),
        }
        started = time.monotonic()
        result = subprocess.run(
            [str(SERVE)], env=env, capture_output=True, text=True, timeout=30, cwd=ROOT
        )
        elapsed = time.monotonic() - started
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert elapsed < 10
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert str(port) in lines[0]
    assert "NUKEWORKS_BIND" in lines[0]
    assert "gunicorn pid" not in output  # nothing was started


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("[::1]:8001", ("::1", 8001)),
        (":8002", ("0.0.0.0", 8002)),
        ("unix:/tmp/nukeworks.sock", None),
    ],
)
def test_split_bind(bind, expected):
    assert port_check.split_bind(bind) == expected


def test_a_free_port_is_not_reported_taken():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert port_check.port_taken("127.0.0.1", port) == ""
