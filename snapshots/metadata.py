"""The JSON sidecar beside each snapshot: who took it, when, why, and what it holds.

A sidecar travels with its snapshot when an operator copies the folder. It is also what makes
a file a snapshot at all: a file in the snapshots folder without a sidecar recording its name,
its size and a SHA-256 is ignored (snapshots.folder), so a stray file, or one copied in
without its sidecar, is never offered for download or restore.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from snapshots import naming

SIDECAR_SUFFIX = ".json"
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


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
    # The payloads (attachment contents, by SHA-256) this snapshot's rows reference: they are
    # kept in the database's shared payload store for as long as the snapshot exists.
    payloads: tuple[str, ...] = ()

    @property
    def kind_label(self) -> str:
        return Kind.LABELS.get(self.kind, self.kind)

    def to_json(self) -> dict[str, Any]:
        """Return the sidecar content of this snapshot."""
        data = asdict(self)
        data.pop("path")
        data["payloads"] = sorted(self.payloads)
        data["created_at"] = self.created_at.astimezone(UTC).isoformat()
        data["format"] = 1
        return data


def sidecar_of(snapshot_path: Path) -> Path:
    """Return the sidecar path of a snapshot file."""
    return snapshot_path.with_name(snapshot_path.name + SIDECAR_SUFFIX)


def write_sidecar(snapshot: Snapshot) -> None:
    """Write the sidecar atomically and durably (temporary file, fsync, rename, folder fsync).

    The sidecar is what makes the file a snapshot: until its rename is on disk, a power cut
    could leave the snapshot that was reported taken unlisted.
    """
    target = sidecar_of(snapshot.path)
    temporary = target.with_name(f".{target.name}.tmp")
    # O_NOFOLLOW | O_EXCL: a link planted under the temporary name is never written through.
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
    )
    try:
        with open(fd, "w", encoding="utf-8") as fh:
            json.dump(snapshot.to_json(), fh, indent=2, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, target)
        folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def sidecar_problem(data: object, name: str, size: int) -> str | None:
    """Return why `data` (a parsed sidecar) does not describe the file `name` of `size` bytes.

    The recorded SHA-256 must be well formed here; whether the file still matches it is
    checked when the snapshot is restored (hashing every snapshot on each listing would read
    gigabytes).
    """
    if not isinstance(data, dict):
        return "it is not a snapshot sidecar"
    if data.get("name") != name:
        return "it records another file name"
    if not isinstance(data.get("sha256"), str) or not SHA256_PATTERN.match(data["sha256"]):
        return "it records no SHA-256"
    recorded = data.get("size")
    if isinstance(recorded, bool) or not isinstance(recorded, int) or recorded != size:
        return "it records another size"
    return None


def from_sidecar(snapshot_path: Path, st: os.stat_result, data: dict[str, Any]) -> Snapshot:
    """Return the snapshot at `snapshot_path` (stat `st`) described by its sidecar `data`."""
    fallback_time = naming.time_of(snapshot_path.name) or datetime.fromtimestamp(st.st_mtime, UTC)
    known = {f.name for f in fields(Snapshot)} - {"name", "path", "size", "payloads"}
    values: dict[str, Any] = {
        key: str(value) for key, value in data.items() if key in known and value is not None
    }
    try:
        created = datetime.fromisoformat(values.pop("created_at", ""))
        values["created_at"] = created if created.tzinfo else created.replace(tzinfo=UTC)
    except ValueError:
        values["created_at"] = fallback_time
    recorded = data.get("payloads")
    values["payloads"] = tuple(
        sorted(
            {h for h in recorded if isinstance(h, str) and SHA256_PATTERN.match(h)}
            if isinstance(recorded, list)
            else ()
        )
    )
    return Snapshot(name=snapshot_path.name, path=snapshot_path, size=st.st_size, **values)
