"""SystemSetting: key/value settings stored inside each database file."""

from __future__ import annotations

from django.db import models


class SystemSetting(models.Model):
    """One setting of this database (its display name travels with the file)."""

    DISPLAY_NAME = "db_display_name"

    key = models.CharField(max_length=100, unique=True)
    value = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "system_settings"
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"

    @classmethod
    def get_value(
        cls, key: str, default: str | None = None, *, using: str | None = None
    ) -> str | None:
        """Return the value stored under `key`, or `default`."""
        row = cls.objects.db_manager(using).filter(key=key).values_list("value", flat=True).first()
        return default if row is None else row

    @classmethod
    def set_value(cls, key: str, value: str, *, using: str | None = None) -> None:
        """Store `value` under `key`."""
        cls.objects.db_manager(using).update_or_create(key=key, defaults={"value": value})
