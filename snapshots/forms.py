"""Forms of the snapshot pages."""

from __future__ import annotations

from django import forms

from snapshots import retention
from snapshots.service import MAX_NOTE


class CreateSnapshotForm(forms.Form):
    """An optional note; it is stored in the sidecar, never used in a file name."""

    note = forms.CharField(
        required=False,
        max_length=MAX_NOTE,
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": "Why (optional)", "size": 40}),
    )


class RetentionForm(forms.Form):
    """The database's retention policy; empty or 0 means "no limit"."""

    max_snapshots = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=retention.MAX_SNAPSHOTS_LIMIT,
        label="Keep at most (snapshots)",
    )
    retention_days = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=retention.RETENTION_DAYS_LIMIT,
        label="Delete snapshots older than (days)",
    )

    def policy(self) -> retention.Policy:
        """Return the policy the valid form describes."""
        data = self.cleaned_data
        return retention.Policy(
            max_snapshots=data.get("max_snapshots") or None,
            retention_days=data.get("retention_days") or None,
        )
