"""instance/db_selector.json: the machine-local memory of the selector.

Schema: {"recent_paths": [], "last_browsed_dir": "", "global_default_path": ""}. Writes are
atomic (temporary file + rename) and serialised across processes with a lock file; a corrupt
or hand-edited file is tolerated (unknown keys dropped, wrong types reset) and rewritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dbselect.conf import get_config

logger = logging.getLogger("nukeworks.dbselect")

EMPTY: dict[str, Any] = {"recent_paths": [], "last_browsed_dir": "", "global_default_path": ""}


def cache_file() -> Path:
    """Return the path of the JSON file."""
    return Path(get_config()["SELECTOR_CACHE_FILE"])


def _clean(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        return dict(EMPTY, recent_paths=[])
    recent = data.get("recent_paths")
    if not isinstance(recent, list):
        recent = []
    recent_paths = [p for p in recent if isinstance(p, str) and p]
    browsed = data.get("last_browsed_dir")
    default = data.get("global_default_path")
    return {
        "recent_paths": recent_paths[: get_config()["RECENT_PATHS_LIMIT"]],
        "last_browsed_dir": browsed if isinstance(browsed, str) else "",
        "global_default_path": default if isinstance(default, str) else "",
    }


def parse(text: str) -> tuple[dict[str, Any], bool]:
    """Parse the file's text; return the clean state and whether the text was already clean."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        return dict(EMPTY, recent_paths=[]), False
    state = _clean(raw)
    return state, raw == state


def _read() -> tuple[dict[str, Any], bool]:
    try:
        text = cache_file().read_text(encoding="utf-8")
    except FileNotFoundError:
        return dict(EMPTY, recent_paths=[]), True
    except (OSError, UnicodeDecodeError) as exc:
        logger.warning("selector cache %s unreadable: %s", cache_file(), exc)
        return dict(EMPTY, recent_paths=[]), False
    return parse(text)


def load() -> dict[str, Any]:
    """Return the current state; a corrupt file is logged, rewritten clean, and read as such."""
    state, clean = _read()
    if not clean:
        logger.warning("selector cache %s was corrupt; rewriting it", cache_file())
        with contextlib.suppress(OSError), _locked():
            state, clean = _read()
            if not clean:
                _write(state)
    return state


@contextmanager
def _locked() -> Iterator[None]:
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(state: dict[str, Any]) -> None:
    path = cache_file()
    fd, tmp = tempfile.mkstemp(prefix=".db_selector.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remember_selection(path: str) -> dict[str, Any]:
    """Record a successful selection: recent paths, last browsed folder and global default."""
    with _locked():
        state, _ = _read()
        recent = [path] + [p for p in state["recent_paths"] if p != path]
        state["recent_paths"] = recent[: get_config()["RECENT_PATHS_LIMIT"]]
        state["last_browsed_dir"] = os.path.dirname(path)
        state["global_default_path"] = path
        _write(state)
        return state
