"""Settings of the metrics app: `NUKEWORKS_METRICS` in the project settings over these."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Off: no middleware, no per-statement tallies, /metrics answers 404.
    "ENABLED": True,
    # A bearer token a scraper sends (`Authorization: Bearer <token>`); empty: none accepted.
    "TOKEN": "",
    # Client addresses or networks (e.g. "127.0.0.1", "10.0.0.0/8") allowed without a token.
    "ALLOW": [],
}


def config() -> dict[str, Any]:
    """Return the effective metrics settings."""
    return {**DEFAULTS, **getattr(settings, "NUKEWORKS_METRICS", {})}


def enabled() -> bool:
    return bool(config()["ENABLED"])


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Return the networks of ALLOW (an invalid entry is the system check metrics.E001)."""
    networks = []
    for entry in config()["ALLOW"]:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            continue
    return networks


def multiprocess_dir() -> str | None:
    """Return the folder of prometheus-client's multiprocess mode, when the server set one.

    Set in the environment before the worker processes start (nukeworks/gunicorn.conf.py,
    nukeworks/serve.sh): every process then writes its values to its own files there, and
    /metrics adds them up, whichever worker answers.
    """
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
