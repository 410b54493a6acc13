"""Carry payloads from one database's store to another's: hard links, or copies across disks.

Payloads never change once stored, so a hard link shares the bytes safely: a duplicated or
restored-as-new database costs no space for its attachments when both stores are on one
filesystem. Across filesystems (or where links are refused) the file is copied and fsynced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from payloads.store import INCOMING_PREFIX, PayloadStore, fsync_folder

# errno values meaning "a hard link cannot be made here": copy instead.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES}

__all__ = ["Carried", "carry"]


@dataclass
class Carried:
    """What carrying did: hashes linked, copied, already there, and missing at the source."""

    linked: int = 0
    copied: int = 0
    present: int = 0
    missing: list[str] = field(default_factory=list)
    bytes: int = 0

    def describe(self) -> str:
        """Return a one-line summary for audit entries and command output."""
        text = (
            f"{self.linked + self.copied + self.present} attachment file(s): "
            f"{self.linked} linked, {self.copied} copied, {self.present} already there"
        )
        if self.missing:
            text += f", {len(self.missing)} missing at the source"
        return text


def carry(
    source: PayloadStore,
    target: PayloadStore,
    hashes: Iterable[str],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Carried:
    """Make every payload of `hashes` present in `target`, taken from `source`."""
    wanted = sorted(set(hashes))
    result = Carried()
    touched: set[str] = set()
    for done, sha256 in enumerate(wanted, 1):
        if target.has(sha256):
            result.present += 1
        else:
            origin = source.path_of(sha256)
            if source.stat(sha256) is None:
                result.missing.append(sha256)
            else:
                final = target.path_of(sha256)
                final.parent.mkdir(parents=True, exist_ok=True)
                temporary = target.root / f"{INCOMING_PREFIX}{sha256[:16]}-{os.getpid()}"
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
                try:
                    os.link(origin, temporary)
                    result.linked += 1
                except OSError as exc:
                    if exc.errno not in _NO_LINK:
                        raise
                    _copy(origin, temporary)
                    result.copied += 1
                os.replace(temporary, final)
                touched.add(final.parent.name)
                result.bytes += final.stat().st_size
        if progress is not None:
            progress(done, len(wanted))
    for name in touched:
        fsync_folder(target.root / name)
    if touched:
        fsync_folder(target.root)
    return result


def _copy(origin: os.PathLike[str], temporary: os.PathLike[str]) -> None:
    with open(origin, "rb") as src, open(temporary, "xb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fchmod(dst.fileno(), 0o444)
        os.fsync(dst.fileno())
