"""Is a queue worker (`manage.py run_huey`) running on this machine?

Each consumer announces itself when it starts (a huey start-up hook, provisioning.tasks) with a
small file `instance/provisioning/workers/<host>-<pid>.json`; a worker counts as running while
that process is alive and still a `run_huey`. `manage.py createdb` asks this to decide whether
to wait for the worker or to build the database itself.

With REDIS_URL (several servers sharing one Redis queue), each worker also keeps a key
`<prefix>:provisioning:worker:<host>:<pid>` alive in Redis (30 s expiry, refreshed every 10 s
by a heartbeat thread), so a worker on another machine counts as running too.
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

from dbselect import redis_state

WORKER_COMMAND = b"run_huey"
# Seconds a worker's Redis key lives without a heartbeat, and between two heartbeats.
REDIS_TTL = 30
HEARTBEAT = 10
_heartbeat_started = threading.Event()


def _redis_key(host: str = "*", pid: object = "*") -> str:
    prefix = getattr(settings, "NUKEWORKS_REDIS_PREFIX", "") or redis_state.DEFAULT_PREFIX
    return f"{prefix}:provisioning:worker:{host}:{pid}"


def _beat() -> None:
    """Keep this worker's Redis key alive while the process runs (a daemon thread)."""
    key = _redis_key(socket.gethostname(), os.getpid())
    while True:
        # Redis restarting: the next beat tries again.
        with contextlib.suppress(Exception):
            redis_state.client().set(key, "1", ex=REDIS_TTL)
        time.sleep(HEARTBEAT)


def _others_in_redis() -> bool:
    """Return True when a worker of any machine keeps its key in Redis."""
    try:
        return next(redis_state.client().scan_iter(match=_redis_key(), count=100), None) is not None
    except Exception:
        return False


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
    if redis_state.enabled() and not _heartbeat_started.is_set():
        _heartbeat_started.set()
        threading.Thread(target=_beat, name="nw-worker-heartbeat", daemon=True).start()
    data = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    temporary = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def withdraw() -> None:
    """Forget this process's announcement (the worker stops)."""
    with contextlib.suppress(FileNotFoundError):
        _own_file().unlink()
    if redis_state.enabled():
        with contextlib.suppress(Exception):
            redis_state.client().delete(_redis_key(socket.gethostname(), os.getpid()))


def _alive_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return WORKER_COMMAND in cmdline


def running() -> bool:
    """Return True when a queue worker is alive: one of this machine (dead ones forgotten),
    or, with REDIS_URL, of any machine."""
    if _local_running():
        return True
    return redis_state.enabled() and _others_in_redis()


def _local_running() -> bool:
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
