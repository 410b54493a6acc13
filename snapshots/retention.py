"""Retention on demand: `max_snapshots` and `retention_days`, kept in each database itself.

Like the original application's settings, both live in the database's `system_settings`, so
they travel with the file. Empty or 0 means "no limit". Nothing applies them on a schedule:
an admin presses a button or an operator runs `manage.py snapshot prune`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dbselect.models import SystemSetting
from snapshots.metadata import Snapshot

MAX_SNAPSHOTS_KEY = "max_snapshots"
RETENTION_DAYS_KEY = "retention_days"
# Bounds of what an admin may type (a century of days is "keep everything" anyway).
MAX_SNAPSHOTS_LIMIT = 10_000
RETENTION_DAYS_LIMIT = 36_500


@dataclass(frozen=True)
class Policy:
    """How many snapshots to keep and for how long; None is "no limit"."""

    max_snapshots: int | None = None
    retention_days: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.max_snapshots is None and self.retention_days is None

    def describe(self) -> str:
        """Return the policy in words."""
        parts = []
        if self.max_snapshots is not None:
            parts.append(f"keep the newest {self.max_snapshots}")
        if self.retention_days is not None:
            parts.append(f"delete those older than {self.retention_days} days")
        return "; ".join(parts) if parts else "keep every snapshot"


def _as_limit(raw: str | None) -> int | None:
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def load(alias: str) -> Policy:
    """Return the retention policy stored in the database `alias`."""
    return Policy(
        max_snapshots=_as_limit(SystemSetting.get_value(MAX_SNAPSHOTS_KEY, using=alias)),
        retention_days=_as_limit(SystemSetting.get_value(RETENTION_DAYS_KEY, using=alias)),
    )


def save(alias: str, policy: Policy) -> None:
    """Store `policy` in the database `alias` (empty text for "no limit")."""
    for key, value in (
        (MAX_SNAPSHOTS_KEY, policy.max_snapshots),
        (RETENTION_DAYS_KEY, policy.retention_days),
    ):
        SystemSetting.set_value(key, "" if value is None else str(value), using=alias)


def plan(snapshots: list[Snapshot], policy: Policy, now: datetime) -> list[Snapshot]:
    """Return the snapshots `policy` removes, given `snapshots` newest first."""
    doomed: list[Snapshot] = []
    cutoff = now - timedelta(days=policy.retention_days) if policy.retention_days else None
    for position, snapshot in enumerate(snapshots):
        too_many = policy.max_snapshots is not None and position >= policy.max_snapshots
        too_old = cutoff is not None and snapshot.created_at < cutoff
        if too_many or too_old:
            doomed.append(snapshot)
    return doomed
