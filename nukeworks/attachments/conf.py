"""Settings of attachments: one NUKEWORKS_ATTACHMENTS dict over these defaults."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Largest file accepted, in bytes (env NUKEWORKS_ATTACHMENT_MAX_MB).
    "MAX_BYTES": 50 * 1024 * 1024,
}


def setting(name: str) -> Any:
    """Return one attachments setting (the project's value, else the default)."""
    return {**DEFAULTS, **getattr(settings, "NUKEWORKS_ATTACHMENTS", {})}[name]
