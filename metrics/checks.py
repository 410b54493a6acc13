"""System checks of the metrics settings."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.core.checks import Error, register

from metrics import conf


@register()
def check_allow_list(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """metrics.E001: every NUKEWORKS_METRICS_ALLOW entry is an address or a network."""
    errors = []
    for entry in conf.config()["ALLOW"]:
        try:
            ipaddress.ip_network(str(entry).strip(), strict=False)
        except ValueError:
            errors.append(
                Error(
                    f"NUKEWORKS_METRICS_ALLOW: {entry!r} is not an address or a network.",
                    hint="Use addresses or networks such as 127.0.0.1 or 10.0.0.0/8.",
                    id="metrics.E001",
                )
            )
    return errors
