"""instance/db_selector.json: the machine-local memory of the selector, and each session's own.

Schema: {"recent_paths": [], "last_browsed_dir": "", "global_default_path": ""}. Writes are
atomic (temporary file + rename) and serialised across processes with a lock file; a corrupt
or hand-edited file is tolerated (unknown keys dropped, wrong types reset) and rewritten.

The file is shared by everyone who uses this machine. Each browser session also keeps its own
history of the same shape in its session (`SESSION_HISTORY`); `for_request()` decides which
one a request sees: in production the machine's only for operators, everybody else their own.

With REDIS_URL set (several servers), the same JSON lives in Redis instead, at the key
`<prefix>:dbselect:selector` (dbselect.redis_state), so what one server remembers every server
shows; each change is one optimistic transaction (WATCH, then MULTI/EXEC, retried when another
server changed it meanwhile), the file's lock and atomic rename in Redis's terms.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.dispatch import receiver
from django.http import HttpRequest

from dbselect import redis_state
from dbselect.conf import get_config
from dbselect.files.locks import flocked
from dbselect.signals import database_switched

logger = logging.getLogger("nukeworks.dbselect")

EMPTY: dict[str, Any] = {"recent_paths": [], "last_browsed_dir": "", "global_default_path": ""}
# The session key of a browser session's own selector history (same schema as the file).
SESSION_HISTORY = "dbselect_history"


def cache_file() -> Path:
    """Return the path of the JSON file."""
    return Path(get_config()["SELECTOR_CACHE_FILE"])


def redis_key() -> str:
    """Return the Redis key of the shared state (with REDIS_URL)."""
    return redis_state.key("selector")


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
    if redis_state.enabled():
        return _redis_load()
    state, clean = _read()
    if not clean:
        logger.warning("selector cache %s was corrupt; rewriting it", cache_file())
        with contextlib.suppress(OSError), _locked():
            state, clean = _read()
            if not clean:
                _write(state)
    return state


def update(change: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Apply `change` to the state atomically (it edits the dict in place and returns whether
    it changed anything, so an unchanged state is not rewritten); return the state after."""
    if redis_state.enabled():
        return _redis_update(change)
    with _locked():
        state, _ = _read()
        if change(state):
            _write(state)
        return state


def _redis_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return ""  # parse() reads it as corrupt


def _redis_load() -> dict[str, Any]:
    text = _redis_text(redis_state.client().get(redis_key()))
    if text is None:
        return dict(EMPTY, recent_paths=[])
    state, clean = parse(text)
    if not clean:
        logger.warning("selector state in Redis (%s) was corrupt; rewriting it", redis_key())
        state = _redis_update(lambda _state: True)
    return state


def _redis_update(change: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    key = redis_key()
    result: dict[str, Any] = {}

    def attempt(pipe: Any) -> None:
        text = _redis_text(pipe.get(key))
        state = dict(EMPTY, recent_paths=[]) if text is None else parse(text)[0]
        changed = change(state)
        result.clear()
        result.update(state)
        if changed:
            pipe.multi()
            pipe.set(key, json.dumps(state))

    # WATCH key; read; MULTI; SET; EXEC — retried by redis-py when another server wrote first.
    redis_state.client().transaction(attempt, key)
    return result


@contextmanager
def _locked() -> Iterator[None]:
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with flocked(str(path) + ".lock", exclusive=True, timeout=None):
        yield


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

    def change(state: dict[str, Any]) -> bool:
        recent = [path] + [p for p in state["recent_paths"] if p != path]
        state["recent_paths"] = recent[: get_config()["RECENT_PATHS_LIMIT"]]
        state["last_browsed_dir"] = os.path.dirname(path)
        state["global_default_path"] = path
        return True

    return update(change)


def forget(request: HttpRequest, path: str) -> bool:
    """Remove `path` from the recent paths this request sees; return True if it was there.

    From this browser session's own history always, and from the machine's history when the
    request may see it (shows_machine_history): the list the user looked at loses the entry.
    """
    found = False
    own = session_history(request)
    if path in own["recent_paths"]:
        own["recent_paths"] = [p for p in own["recent_paths"] if p != path]
        request.session[SESSION_HISTORY] = own
        found = True
    if shows_machine_history(request):

        def change(state: dict[str, Any]) -> bool:
            nonlocal found
            if path not in state["recent_paths"]:
                return False
            state["recent_paths"] = [p for p in state["recent_paths"] if p != path]
            if state.get("global_default_path") == path:
                state["global_default_path"] = ""
            found = True
            return True

        update(change)
    return found


def session_history(request: HttpRequest) -> dict[str, Any]:
    """Return this browser session's own history (recent paths, last browsed folder, last used)."""
    session = getattr(request, "session", None)
    return _clean(session.get(SESSION_HISTORY) if session is not None else None)


def remember_in_session(request: HttpRequest, path: str) -> None:
    """Record a successful selection in this browser session's own history."""
    state = session_history(request)
    recent = [path] + [p for p in state["recent_paths"] if p != path]
    request.session[SESSION_HISTORY] = {
        "recent_paths": recent[: get_config()["RECENT_PATHS_LIMIT"]],
        "last_browsed_dir": os.path.dirname(path),
        "global_default_path": path,
    }


@receiver(database_switched, dispatch_uid="nw-selector-session-history")
def _remember_on_select(
    sender: object, request: HttpRequest, path: str | None, reason: str, **kwargs: object
) -> None:
    # The same moment services records the selection in the machine file.
    if reason == "selected" and path:
        remember_in_session(request, path)


def shows_machine_history(request: HttpRequest) -> bool:
    """Return True when this request may see the machine's history (instance/db_selector.json).

    Outside production everybody may, as the specification has it. In production the file
    tells which databases anyone on this machine worked on, so only operators see it.
    """
    if getattr(settings, "NUKEWORKS_ENV", "development") != "production":
        return True
    from dbselect import permissions

    return permissions.is_operator(request)


def for_request(request: HttpRequest) -> dict[str, Any]:
    """Return the history this request may see: the machine's, or its session's own."""
    return load() if shows_machine_history(request) else session_history(request)
