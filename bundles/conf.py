"""Settings of bundles, read at each use (so `override_settings` and pytest's `settings` work)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

# Largest bundle accepted (bytes of its data once uncompressed, and of the .zip itself).
DEFAULT_MAX_BYTES = 2 * 1024**3
# Largest upload accepted by the Import page.
DEFAULT_UPLOAD_MAX_BYTES = 200 * 1024**2


def seeds_dir() -> Path:
    """Return the folder of the shipped seed packages (seeds/<name>/<version>/)."""
    return Path(getattr(settings, "NUKEWORKS_SEEDS_DIR", Path(settings.BASE_DIR) / "seeds"))


def max_bytes() -> int:
    """Return the size limit of a bundle (NUKEWORKS_BUNDLE_MAX_BYTES)."""
    return int(getattr(settings, "NUKEWORKS_BUNDLE_MAX_BYTES", DEFAULT_MAX_BYTES))


def upload_max_bytes() -> int:
    """Return the size limit of an uploaded bundle (NUKEWORKS_BUNDLE_UPLOAD_MAX_BYTES)."""
    return int(getattr(settings, "NUKEWORKS_BUNDLE_UPLOAD_MAX_BYTES", DEFAULT_UPLOAD_MAX_BYTES))


def payload_max_bytes() -> int:
    """Return the size limit of one attachment file carried by a bundle.

    The attachments' own upload limit (NUKEWORKS_ATTACHMENTS["MAX_BYTES"]): a bundle brings
    no file into a database that an upload could not have brought.
    """
    from nukeworks.attachments.conf import setting

    return int(setting("MAX_BYTES"))
