"""Settings of the engine cache administration, read from the same `DBSELECT` dict.

Kept apart from `dbselect/conf.py` so the engine cache can grow its own keys; every key can
be set in `DBSELECT` like the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from dbselect.conf import get_config

ENGINE_DEFAULTS: dict[str, Any] = {
    # Folder of the store every worker process shares (engine tables, dispose requests).
    "ENGINE_STORE_DIR": None,
    # Background thread per server process (never in manage.py commands or the test client)
    # that applies disposals to idle threads and publishes the engine table.
    "ENGINE_JANITOR": True,
    # Seconds between two looks of that thread at the shared dispose counter.
    "ENGINE_JANITOR_TICK": 0.25,
    # Seconds between two unprompted publications of a worker's engine table.
    "ENGINE_HEARTBEAT": 5.0,
    # "Dispose all idle" disposes engines no worker has used for this many seconds.
    "ENGINE_IDLE_SECONDS": 300,
    # Persistent connections (CONN_MAX_AGE > 0) one thread holds open at most, at any moment:
    # the least recently used are closed before it opens one more (file-descriptor bound).
    "MAX_CONNECTIONS_PER_THREAD": 8,
    # Seconds the engines page waits for the other workers to publish a fresh table.
    "ENGINE_REFRESH_WAIT": 1.0,
}


def engine_setting(name: str) -> Any:
    """Return one engine-cache setting: DBSELECT[name] if set, else its default."""
    value = get_config().get(name, ENGINE_DEFAULTS[name])
    if name == "ENGINE_STORE_DIR" and value is None:
        base_dir = Path(getattr(settings, "BASE_DIR", "."))
        value = base_dir / "instance" / "engines"
    return value
