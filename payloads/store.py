"""A database's payload store: files kept beside it, named by the SHA-256 of their content.

    <store>/<first two hex digits>/<sha256>      a payload, read-only (0444), never rewritten
    <store>/.incoming-<random>                   an upload being written (removed on failure)
    <store>/.payloads.lock                       flock(): writers shared, the collector alone

Content addressing makes every payload immutable: equal content is stored once, a snapshot or
a copy of the database never needs its own copy (it records which hashes it references), and
a hard link is as good as a copy. A payload is written to a temporary name in the store,
fsynced, renamed into place and its folder fsynced before the database row naming it is
committed, so a committed row never points at content a power cut could take back.

Whoever adds a payload holds the store's lock shared (`writing`) from the write until the row
naming it is committed; the collector (payloads gc) holds it exclusively while it decides
what is unreferenced, so it never removes content a new row is about to name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dbselect.files.locks import LockTimeout, flocked
from dbselect.layout import payload_dir_for

SHA256 = re.compile(r"^[0-9a-f]{64}$")
LOCK_NAME = ".payloads.lock"
INCOMING_PREFIX = ".incoming-"
# Seconds a writer or the collector waits for the other.
LOCK_TIMEOUT = 30.0
_CHUNK = 1 << 20

__all__ = [
    "SHA256",
    "EmptyPayload",
    "PayloadError",
    "PayloadStore",
    "PayloadTooLarge",
    "StoreBusy",
    "Stored",
    "database_for_alias",
    "fsync_folder",
]


class PayloadError(Exception):
    """The payload could not be stored or read; the message says why, for a user."""


class PayloadTooLarge(PayloadError):
    """The content is larger than the limit it was offered under."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The file is larger than the limit of {limit:,} bytes.")
        self.limit = limit


class EmptyPayload(PayloadError):
    """The content has no bytes at all."""

    def __init__(self) -> None:
        super().__init__("The file is empty (0 bytes); nothing was stored.")


class StoreBusy(PayloadError):
    """The collector (or a writer) held the store for longer than the caller waits."""


@dataclass(frozen=True)
class Stored:
    """A payload in the store: its hash, its size, and whether this call wrote it."""

    sha256: str
    size: int
    created: bool


def fsync_folder(folder: Path) -> None:
    """Make the entries of `folder` (a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def database_for_alias(alias: str) -> str:
    """Return the database behind the Django alias `alias`: its file's path, or the target
    `postgresql:<label>` of a PostgreSQL database of the catalog (whose NAME is only the
    database's name on its server, so its payloads live in databases/<label>/payloads/)."""
    from django.db import connections

    settings_dict = connections[alias].settings_dict
    if settings_dict.get("ENGINE") != "django.db.backends.postgresql":
        return str(settings_dict["NAME"])
    from dbselect import catalog, engines

    for engine in engines.all():
        if engine.alias == alias and not engine.is_file:
            return engine.target
    if catalog.get(alias) is not None:
        return catalog.target_for(alias)
    raise PayloadError(
        f"The PostgreSQL database of the connection {alias!r} is not in the catalog: its "
        "attachments store is unknown."
    )


def _checked(sha256: str) -> str:
    if not isinstance(sha256, str) or not SHA256.match(sha256):
        raise PayloadError("Not a payload id (a SHA-256 in lower-case hex).")
    return sha256


class PayloadStore:
    """The content-addressed files of one database (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @classmethod
    def for_database(cls, database: str | os.PathLike[str]) -> PayloadStore:
        """Return the store beside the database file `database` (dbselect.layout), or of the
        PostgreSQL database `postgresql:<label>` (databases/<label>/payloads/)."""
        return cls(payload_dir_for(database))

    @classmethod
    def for_alias(cls, alias: str) -> PayloadStore:
        """Return the store of the database behind the Django alias `alias`."""
        return cls.for_database(database_for_alias(alias))

    def __repr__(self) -> str:
        return f"PayloadStore({str(self.root)!r})"

    def path_of(self, sha256: str) -> Path:
        """Return where the payload `sha256` lies (whether or not it is there)."""
        sha256 = _checked(sha256)
        return self.root / sha256[:2] / sha256

    def stat(self, sha256: str) -> os.stat_result | None:
        """Return the payload's stat when it is a regular file in the store, else None."""
        try:
            st = os.lstat(self.path_of(sha256))
        except OSError:
            return None
        return st if stat.S_ISREG(st.st_mode) else None

    def has(self, sha256: str) -> bool:
        """Return True when the payload's file is in the store (its content is not read)."""
        return self.stat(sha256) is not None

    @contextlib.contextmanager
    def writing(self, *, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Hold the store for adding payloads: commit the rows naming them inside the block."""
        with self._locked(exclusive=False, timeout=timeout):
            yield

    @contextlib.contextmanager
    def collecting(self, *, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Hold the store alone (no payload is added meanwhile): for the collector."""
        with self._locked(exclusive=True, timeout=timeout):
            yield

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool, timeout: float) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with flocked(self.root / LOCK_NAME, exclusive=exclusive, timeout=timeout):
                yield
        except LockTimeout:
            raise StoreBusy(
                "The attachments store is being cleaned up; try again in a moment."
            ) from None

    def put(self, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> Stored:
        """Store the content `chunks` yield; return its hash and size.

        Call inside `writing()`. Raise PayloadTooLarge past `max_bytes` and EmptyPayload for
        no bytes at all; nothing is left behind then. Content already in the store is not
        written again (its file's time is refreshed, see `collect` in payloads.collect).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f"{INCOMING_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            digest = hashlib.sha256()
            size = 0
            try:
                for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise PayloadTooLarge(max_bytes)
                    digest.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                if size == 0:
                    raise EmptyPayload()
                os.fchmod(fd, 0o444)
                os.fsync(fd)
            finally:
                os.close(fd)
            return self._place(temporary, digest.hexdigest(), size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()

    def put_file(self, source: str | os.PathLike[str], *, max_bytes: int | None = None) -> Stored:
        """Store the content of the file at `source` (see `put`)."""
        with open(source, "rb") as fh:
            return self.put(iter(lambda: fh.read(_CHUNK), b""), max_bytes=max_bytes)

    def _place(self, temporary: Path, sha256: str, size: int) -> Stored:
        final = self.path_of(sha256)
        existing = self.stat(sha256)
        if existing is not None and existing.st_size == size:
            # Equal content is stored once. Touch it: a collector that lists files before
            # taking the lock sees it as recently wanted.
            with contextlib.suppress(OSError):
                os.utime(final)
            return Stored(sha256, size, created=False)
        folder = final.parent
        new_folder = not folder.is_dir()
        folder.mkdir(exist_ok=True)
        # A damaged file of another size under the name is replaced by the good content.
        os.replace(temporary, final)
        fsync_folder(folder)
        if new_folder:
            fsync_folder(self.root)
        return Stored(sha256, size, created=True)

    def open(self, sha256: str) -> BinaryIO:
        """Open the payload for reading; raise FileNotFoundError when its file is missing."""
        fd = os.open(self.path_of(sha256), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FileNotFoundError(errno.ENOENT, "not a regular file", sha256)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def hash_of_file(self, sha256: str) -> str | None:
        """Return the SHA-256 of the payload's file as it is now (None when it is missing)."""
        try:
            with self.open(sha256) as fh:
                digest = hashlib.sha256()
                for chunk in iter(lambda: fh.read(_CHUNK), b""):
                    digest.update(chunk)
        except OSError:
            return None
        return digest.hexdigest()

    def hashes(self) -> Iterator[tuple[str, os.stat_result]]:
        """Yield (hash, stat) of every well-named payload file in the store."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if len(folder.name) != 2 or not folder.is_dir() or folder.is_symlink():
                continue
            for entry in sorted(folder.iterdir()):
                if not SHA256.match(entry.name) or entry.name[:2] != folder.name:
                    continue
                try:
                    st = os.lstat(entry)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield entry.name, st

    def strays(self) -> Iterator[Path]:
        """Yield entries that are not payloads: leftovers of uploads, foreign files."""
        if not self.root.is_dir():
            return
        for entry in sorted(self.root.iterdir()):
            if entry.name == LOCK_NAME:
                continue
            if len(entry.name) == 2 and entry.is_dir() and not entry.is_symlink():
                for inner in sorted(entry.iterdir()):
                    named_well = SHA256.match(inner.name) and inner.name[:2] == entry.name
                    if not named_well or inner.is_symlink() or not inner.is_file():
                        yield inner
                continue
            yield entry

    def remove(self, sha256: str) -> bool:
        """Remove the payload's file (call inside `collecting()`); False when it was gone."""
        try:
            self.path_of(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def size_of(self, sha256: str) -> int | None:
        """Return the payload's size in bytes, or None when its file is missing."""
        st = self.stat(sha256)
        return None if st is None else st.st_size
