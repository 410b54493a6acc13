"""The JSON sidecar beside each snapshot: who took it, when, why, and what it holds.

A sidecar travels with its snapshot when an operator copies the folder, and a snapshot whose
sidecar is missing (copied in by hand) is still listed, with what its name and file tell.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from snapshots import naming

SIDECAR_SUFFIX = ".json"


class Kind:
    """Why a snapshot was taken."""

    MANUAL = "manual"
    SAFETY = "safety"
    PRE_MIGRATION = "pre-migration"

    LABELS = {MANUAL: "Manual", SAFETY: "Before a restore", PRE_MIGRATION: "Before a migration"}


@dataclass(frozen=True)
class Snapshot:
    """One snapshot file and its recorded metadata."""

    name: str
    path: Path
    created_at: datetime
    size: int
    created_by: str = ""
    note: str = ""
    kind: str = Kind.MANUAL
    sha256: str = ""
    source_path: str = ""
    source_display_name: str = ""
    schema_state: str = ""
    has_sidecar: bool = True

    @property
    def kind_label(self) -> str:
        return Kind.LABELS.get(self.kind, self.kind)

    def to_json(self) -> dict[str, Any]:
        """Return the sidecar content of this snapshot."""
        data = asdict(self)
        data.pop("path")
        data.pop("has_sidecar")
        data["created_at"] = self.created_at.astimezone(UTC).isoformat()
        data["format"] = 1
        return data


def sidecar_of(snapshot_path: Path) -> Path:
    """Return the sidecar path of a snapshot file."""
    return snapshot_path.with_name(snapshot_path.name + SIDECAR_SUFFIX)


def write_sidecar(snapshot: Snapshot) -> None:
    """Write the sidecar atomically (temporary file, fsync, rename)."""
    target = sidecar_of(snapshot.path)
    temporary = target.with_name(f".{target.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as fh:
        json.dump(snapshot.to_json(), fh, indent=2, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, target)


def read(snapshot_path: Path) -> Snapshot:
    """Return the snapshot at `snapshot_path` with its sidecar's metadata (if readable)."""
    st = snapshot_path.stat()
    fallback_time = naming.time_of(snapshot_path.name) or datetime.fromtimestamp(st.st_mtime, UTC)
    base = Snapshot(
        name=snapshot_path.name,
        path=snapshot_path,
        created_at=fallback_time,
        size=st.st_size,
        has_sidecar=False,
    )
    data: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(sidecar_of(snapshot_path).read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            data = loaded
    if not data:
        return base
    known = {f.name for f in fields(Snapshot)} - {"name", "path", "size", "has_sidecar"}
    values: dict[str, Any] = {
        key: str(value) for key, value in data.items() if key in known and value is not None
    }
    try:
        created = datetime.fromisoformat(values.pop("created_at", ""))
        values["created_at"] = created if created.tzinfo else created.replace(tzinfo=UTC)
    except ValueError:
        values["created_at"] = fallback_time
    return Snapshot(name=base.name, path=base.path, size=base.size, has_sidecar=True, **values)
