"""What a snapshots folder holds: snapshots, and everything else, which is ignored.

A snapshots folder lies beside its database, often on a share that other people and programs
write to, so nothing in it is trusted. A symbolic link named like a snapshot once made
`/snapshots/<name>/download` send the server's `instance/secret_key` and `/etc/shadow`. An
entry of the folder is a snapshot only when it is

- named like one (`naming.NAME_PATTERN`);
- a regular file: never a symbolic link, folder, FIFO, socket or device. It is checked with
  lstat(), then opened with O_PATH | O_NOFOLLOW and checked again with fstat() of that very
  descriptor (so it cannot be swapped for a link between the check and the read), its resolved
  path must lie in the folder, and only then is a readable descriptor opened, through
  /proc/self/fd, of exactly that inode;
- a SQLite file (its 100-byte header is checked), or, for a `.pgdump` snapshot of a
  PostgreSQL database, a pg_dump custom-format archive (its `PGDMP` magic). Snapshot files
  are never live databases, so reading their header raw is safe; a file this process works on
  (a hard link of a live database, see dbselect.engines.live_files) is refused before any
  readable descriptor of it exists;
- described by a matching sidecar: a regular file `<name>.json` recording this name, this size
  and a SHA-256 (which a restore verifies).

Everything else is *ignored*: never listed, downloaded, restored or deleted, and reported on
the snapshots page with the reason, so an administrator sees what lies in the folder.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbselect.engines import live_files
from dbselect.files.validation import HEADER_SIZE, ValidationFailed, parse_header
from snapshots import metadata, naming
from snapshots.errors import SnapshotError
from snapshots.locks import LOCK_NAME
from snapshots.metadata import Snapshot

# A sidecar is a few hundred bytes; a bigger "sidecar" is not one, and is not read whole.
MAX_SIDECAR_BYTES = 64 * 1024
# Files of snapshots being written right now (sqlite_copy's partial copies and their journals,
# metadata's temporary sidecars): not reported, they come and go with every create.
_WORKING_FILE = re.compile(
    r"^\.(?P<name>[A-Za-z0-9_-]{1,40}-\d{8}-\d{6}-[0-9a-f]{8}\.(?:sqlite|pgdump))"
    r"(?:\.[0-9a-f]{8}\.partial(?:-journal|-wal)?|\.json\.tmp)$"
)
# The first bytes of a pg_dump custom-format archive.
PG_DUMP_MAGIC = b"PGDMP"
# Characters of a file name shown on a page before it is cut (names can be 255 bytes).
MAX_SHOWN_NAME = 120


class NotASnapshot(Exception):
    """An entry of the snapshots folder is not a snapshot; `reason` says why, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Ignored:
    """An entry of the snapshots folder that is not a snapshot, and why."""

    name: str  # printable (see printable_name), for pages and logs only
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


@dataclass
class FolderContent:
    """The snapshots of every database sharing the folder, and the ignored entries."""

    snapshots: list[Snapshot] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)


def printable_name(name: str) -> str:
    """Return a file name as text safe to show: undecodable bytes and control characters
    (newlines, bidirectional overrides…) escaped, long names cut.

    A name comes from whoever wrote the folder; escaping for HTML is the template's job, but a
    lone surrogate would make the page unencodable and a control character would hide what
    the name really is.
    """
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    shown = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )
    return shown if len(shown) <= MAX_SHOWN_NAME else shown[: MAX_SHOWN_NAME - 1] + "…"


def _not_regular(st: os.stat_result) -> str | None:
    """Return what a non-regular file is, in words; None for a regular file."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_regular(folder: Path, name: str) -> tuple[int, os.stat_result]:
    """Open the entry `name` of `folder` for reading, only if it is a regular file in it.

    Return the descriptor (the caller closes it) and its fstat(). Raise NotASnapshot for a
    symbolic link, anything but a regular file, a file outside the folder or a live database
    file, and OSError (FileNotFoundError…) as the file system does. Never blocks on a FIFO and
    never creates anything.
    """
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise NotASnapshot("not a file name")
    real_folder = os.path.realpath(folder)
    path = os.path.join(real_folder, name)
    problem = _not_regular(os.lstat(path))
    if problem:
        raise NotASnapshot(problem)
    # O_PATH: a descriptor of the entry itself (of a link, not its target, with O_NOFOLLOW)
    # that reads nothing and whose close releases no lock, so it may be taken of any file.
    path_fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        held = os.fstat(path_fd)
        problem = _not_regular(held)
        if problem:
            raise NotASnapshot(problem)
        if os.path.dirname(os.path.realpath(path)) != real_folder:
            raise NotASnapshot("outside the snapshots folder")
        if live_files.is_live(held):
            # Closing a readable descriptor of it would release SQLite's locks (live_files).
            raise NotASnapshot("a database file this server works on")
        # Through /proc/self/fd the readable descriptor is of exactly the inode checked above,
        # even if the name was replaced meanwhile. O_NONBLOCK: never wait on a FIFO.
        fd = os.open(
            f"/proc/self/fd/{path_fd}",
            os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
        )
    finally:
        os.close(path_fd)
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode) or live_files.key_of(opened) != live_files.key_of(held):
        os.close(fd)
        raise NotASnapshot("changed while it was being checked")
    return fd, opened


def _read_sidecar(folder: Path, name: str) -> dict[str, Any]:
    """Return the parsed sidecar of the snapshot `name`; raise NotASnapshot if unusable."""
    try:
        fd, _ = open_regular(folder, name + metadata.SIDECAR_SUFFIX)
    except FileNotFoundError:
        raise NotASnapshot("no matching sidecar") from None
    except NotASnapshot as exc:
        raise NotASnapshot(f"no matching sidecar: the sidecar is {exc.reason}") from None
    try:
        raw = os.pread(fd, MAX_SIDECAR_BYTES + 1, 0)
    finally:
        os.close(fd)
    if len(raw) > MAX_SIDECAR_BYTES:
        raise NotASnapshot("no matching sidecar: the sidecar is too large")
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        raise NotASnapshot("no matching sidecar: the sidecar is not valid JSON") from None
    return data


def inspect(folder: Path, name: str, *, keep_open: bool = False) -> tuple[Snapshot, int | None]:
    """Return the snapshot `name` of `folder` if the entry is one (see the module docstring).

    With `keep_open`, also return the checked descriptor (the caller closes it): reading
    through it reads exactly the file that was checked. Raise NotASnapshot with the reason
    otherwise, and OSError (FileNotFoundError…) as the file system does.
    """
    fd, st = open_regular(folder, name)
    try:
        if name.endswith(naming.PG_SUFFIX):
            if os.pread(fd, len(PG_DUMP_MAGIC), 0) != PG_DUMP_MAGIC:
                raise NotASnapshot("not a pg_dump archive")
        else:
            try:
                parse_header(os.pread(fd, HEADER_SIZE, 0), st.st_size)
            except ValidationFailed:
                raise NotASnapshot("not a SQLite file") from None
        data = _read_sidecar(folder, name)
        problem = metadata.sidecar_problem(data, name, st.st_size)
        if problem:
            raise NotASnapshot(f"no matching sidecar: {problem}")
        snapshot = metadata.from_sidecar(folder / name, st, data)
    except BaseException:
        os.close(fd)
        raise
    if keep_open:
        return snapshot, fd
    os.close(fd)
    return snapshot, None


def is_still(path: Path, fd: int) -> bool:
    """Return True while `path` names, without any link, the file open as `fd`."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and live_files.key_of(st) == live_files.key_of(os.fstat(fd))


def _classify(folder: Path, name: str, names: set[str], content: FolderContent) -> None:
    """Add the entry `name` of `folder` to `content` as a snapshot or an ignored entry."""
    if name == LOCK_NAME:
        problem = _not_regular(os.lstat(folder / name))
        if problem:  # locks.folder_lock refuses to follow it: every operation fails
            content.ignored.append(Ignored(name, problem))
        return
    if _WORKING_FILE.match(name):
        return
    if naming.is_snapshot_name(name):
        try:
            snapshot, _ = inspect(folder, name)
        except NotASnapshot as exc:
            content.ignored.append(Ignored(printable_name(name), exc.reason))
        else:
            content.snapshots.append(snapshot)
        return
    suffix = metadata.SIDECAR_SUFFIX
    if name.endswith(suffix) and naming.is_snapshot_name(name[: -len(suffix)]):
        if name[: -len(suffix)] not in names:
            content.ignored.append(Ignored(printable_name(name), "a sidecar without its snapshot"))
        return  # else reported (if at all) with its snapshot
    content.ignored.append(Ignored(printable_name(name), "not named like a snapshot"))


def scan(folder: Path) -> FolderContent:
    """Return the snapshots in `folder` (of every database sharing it) and what is ignored.

    A missing folder holds nothing. Entries that vanish while the folder is read (a snapshot
    deleted by another request) are skipped.
    """
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return FolderContent()
    except OSError as exc:
        raise SnapshotError(f"The snapshots folder cannot be read: {exc.strerror}.") from exc
    content = FolderContent()
    present = set(names)
    for name in names:
        try:
            _classify(folder, name, present, content)
        except FileNotFoundError:
            continue
        except OSError as exc:
            content.ignored.append(
                Ignored(printable_name(name), f"cannot be read: {exc.strerror or exc}")
            )
    content.ignored.sort(key=lambda entry: entry.name)
    return content
