"""Is a queue worker (`manage.py run_huey`) running on this machine?

Each consumer announces itself when it starts (a huey start-up hook, provisioning.tasks) with a
small file `instance/provisioning/workers/<host>-<pid>.json`; a worker counts as running while
that process is alive and still a `run_huey`. `manage.py createdb` asks this to decide whether
to wait for the worker or to build the database itself. Workers of other machines (several
servers sharing one Redis queue) are not seen: there, use `createdb --no-wait`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

from django.conf import settings

WORKER_COMMAND = b"run_huey"


def workers_dir() -> Path:
    """Return the folder where this machine's workers announce themselves."""
    return Path(settings.INSTANCE_DIR) / "provisioning" / "workers"


def _own_file() -> Path:
    return workers_dir() / f"{socket.gethostname()}-{os.getpid()}.json"


def announce() -> None:
    """Record that this process is a queue worker (called once per worker thread; idempotent)."""
    folder = workers_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = _own_file()
    if path.exists():
        return
    data = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    temporary = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def withdraw() -> None:
    """Forget this process's announcement (the worker stops)."""
    with contextlib.suppress(FileNotFoundError):
        _own_file().unlink()


def _alive_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return WORKER_COMMAND in cmdline


def running() -> bool:
    """Return True when a queue worker of this machine is alive; forget dead ones."""
    host = socket.gethostname()
    try:
        entries = list(workers_dir().glob(f"{host}-*.json"))
    except OSError:
        return False
    alive = False
    for entry in entries:
        try:
            pid = int(json.loads(entry.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive_worker(pid):
            alive = True
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
    return alive
