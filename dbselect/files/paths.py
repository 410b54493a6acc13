"""User-typed paths: normalisation, allowed roots, network detection and bounded file-system calls.

Nothing here creates a file or folder. Calls that may hang on an unreachable network share run
in a small thread pool with a time limit, so a dead server never blocks a worker thread.
"""

from __future__ import annotations

import concurrent.futures
import os
import urllib.parse
from collections.abc import Callable
from functools import cache
from typing import TypeVar

from dbselect.conf import get_config

T = TypeVar("T")

NETWORK_FS_TYPES = frozenset(
    {"cifs", "smb3", "smbfs", "nfs", "nfs4", "afs", "ncpfs", "9p", "fuse.sshfs", "davfs", "ceph"}
)

# Hung calls keep their thread; a few spare threads keep the next call from queuing behind it.
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="dbselect-fs")


class PathRejected(ValueError):
    """A path the user typed cannot be used; the message says why, in plain words."""


def normalize_user_path(raw: object) -> str:
    """Return the absolute, lexically normalised form of a path typed by a user.

    UNC paths (``\\\\server\\share\\file``) are accepted and written with forward slashes.
    """
    if not isinstance(raw, str):
        raise PathRejected("Enter the path of a database file.")
    text = raw.strip()
    if not text:
        raise PathRejected("Enter the path of a database file.")
    if "\x00" in text:
        raise PathRejected("The path contains a NUL character.")
    try:
        # Lone surrogates cannot name a file; later os calls would raise UnicodeEncodeError.
        os.fsencode(text)
    except UnicodeError:
        raise PathRejected("The path contains characters that cannot name a file.") from None
    limit = get_config()["MAX_PATH_LENGTH"]
    if len(text) > limit:
        raise PathRejected(f"The path is longer than {limit} characters.")
    if is_unc(text):
        text = "//" + text.lstrip("\\/").replace("\\", "/")
    if not os.path.isabs(text):
        raise PathRejected(
            "Enter an absolute path (for example /srv/nukeworks/site.sqlite or "
            "\\\\server\\share\\site.sqlite); relative paths are ambiguous on a server."
        )
    return os.path.normpath(text)


def is_unc(path: str) -> bool:
    """Return True for a UNC path (``\\\\server\\share`` or ``//server/share``)."""
    return (path.startswith("\\\\") or path.startswith("//")) and not path.startswith("///")


def is_allowed(path: str) -> bool:
    """Return True when `path` lies under one of the allowed roots (or no roots are set)."""
    roots = get_config()["ALLOWED_ROOTS"]
    if not roots:
        return True
    real = os.path.realpath(path)
    for root in roots:
        root_real = os.path.realpath(root)
        try:
            if os.path.commonpath([real, root_real]) == root_real:
                return True
        except ValueError:
            continue
    return False


def check_allowed(path: str) -> None:
    """Raise PathRejected when `path` lies outside the allowed roots."""
    if not get_config()["ALLOWED_ROOTS"]:
        return
    # realpath() walks every component with lstat(): bounded, as on a dead share it may hang.
    if not bounded(lambda: is_allowed(path)):
        raise PathRejected("This location is outside the folders this server allows.")


@cache
def _network_mounts() -> tuple[str, ...]:
    """Return the mount points whose file system is a network one (read once per process)."""
    mounts: list[str] = []
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2].lower() in NETWORK_FS_TYPES:
                    mounts.append(parts[1].replace("\\040", " "))
    except OSError:
        pass
    return tuple(sorted(mounts, key=len, reverse=True))


def real_path(path: str) -> str:
    """Return the file's real path: links resolved, `//` read as `/` as Linux does.

    POSIX lets a leading `//` mean something else, so realpath() keeps it; Linux does not,
    and one file must have one name here (one engine, one journal mode).
    """
    real = os.path.realpath(path)
    if real.startswith("//"):
        real = "/" + real.lstrip("/")
    return real


def is_network_path(path: str, mounts: tuple[str, ...] | None = None) -> bool:
    """Return True for a real path (see real_path) on a network file system (cifs, nfs…).

    Decided from the mount table, never from how the path was typed: on Linux a UNC-looking
    `//server/share/x` is the local path `/server/share/x`. On Windows a UNC path is remote.
    """
    if os.name == "nt" and is_unc(path):
        return True
    for mount in _network_mounts() if mounts is None else mounts:
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            return True
    return False


SQLITE_URI_MODES = frozenset({"ro", "rw", "rwc", "memory"})


def sqlite_uri(path: str | os.PathLike[str], mode: str, *, immutable: bool = False) -> str:
    """Return the SQLite URI that opens the file at the absolute `path` in `mode` ("ro", "rw"…).

    "file://" + an empty authority + the path, every special character escaped: a path that
    starts with "//" (UNC-style) must not be read as "file://server/…", which SQLite rejects
    ("invalid uri authority"), and "?", "#" or "%" in a name must not end or alter the path.
    `immutable` adds immutable=1 (reads create no -wal/-shm; only for files nobody writes).
    """
    text = os.fspath(path)
    if not os.path.isabs(text):
        raise ValueError(f"sqlite_uri needs an absolute path, not {text!r}")
    if mode not in SQLITE_URI_MODES:
        raise ValueError(f"unknown SQLite open mode {mode!r}")
    query = f"mode={mode}&immutable=1" if immutable else f"mode={mode}"
    return f"file://{urllib.parse.quote(text, safe='/')}?{query}"


def bounded(fn: Callable[[], T], timeout: float | None = None) -> T:
    """Run `fn` with a time limit; raise PathRejected when the file system does not answer."""
    limit = get_config()["STAT_TIMEOUT"] if timeout is None else timeout
    future = _pool.submit(fn)
    try:
        return future.result(timeout=limit)
    except concurrent.futures.TimeoutError:
        raise PathRejected(
            f"The location did not answer within {limit:g} s (is the network share reachable?)."
        ) from None
