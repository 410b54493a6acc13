"""Where the catalog of registered databases is kept: a file, or Redis for several servers.

Without `REDIS_URL` the catalog is `instance/catalog.json` (DBSELECT["CATALOG_FILE"]), mode
0600 because it holds passwords, rewritten atomically (temp file, fsync, rename) under a
flock. With `REDIS_URL` it is one Redis hash, so every app server reads the same catalog and
an entry an operator adds on one server is selectable on all of them.

Entries are read when a database is validated or listed, never on the request path of a
database already open (the engine cache keeps what it needs).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from dbselect import redis_state
from dbselect.conf import setting
from dbselect.files.locks import flocked


def redis_key() -> str:
    """Return the catalog's Redis hash: `<NUKEWORKS_REDIS_PREFIX>:dbselect:catalog`."""
    return redis_state.key("catalog")


class CatalogStore(Protocol):
    """label -> entry dict ({"url", "display_name", "added"})."""

    def read(self) -> dict[str, dict[str, Any]]: ...

    def put(self, label: str, entry: dict[str, Any], *, replace: bool) -> bool: ...

    def delete(self, label: str) -> bool: ...


class FileStore:
    """The catalog in one JSON file of this machine."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        data = json.loads(text) if text.strip() else {}
        return {str(k): v for k, v in data.items() if isinstance(v, dict)}

    def put(self, label: str, entry: dict[str, Any], *, replace: bool) -> bool:
        with self._locked():
            data = self.read()
            if label in data and not replace:
                return False
            data[label] = entry
            self._write(data)
        return True

    def delete(self, label: str) -> bool:
        with self._locked():
            data = self.read()
            if label not in data:
                return False
            del data[label]
            self._write(data)
        return True

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with flocked(str(self.path) + ".lock", exclusive=True, timeout=10):
            yield

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".catalog.", suffix=".tmp", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class RedisStore:
    """The catalog in one Redis hash, shared by every app server."""

    def __init__(self) -> None:
        self.client = redis_state.client()

    def read(self) -> dict[str, dict[str, Any]]:
        raw = self.client.hgetall(redis_key())
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def put(self, label: str, entry: dict[str, Any], *, replace: bool) -> bool:
        value = json.dumps(entry, sort_keys=True)
        if replace:
            self.client.hset(redis_key(), label, value)
            return True
        return bool(self.client.hsetnx(redis_key(), label, value))

    def delete(self, label: str) -> bool:
        return bool(self.client.hdel(redis_key(), label))


def get_store() -> CatalogStore:
    """Return the catalog store the settings name (Redis when REDIS_URL is set)."""
    if redis_state.enabled():
        return RedisStore()
    return FileStore(Path(setting("CATALOG_FILE")))


def new_entry(url: str, display_name: str) -> dict[str, Any]:
    """Return the stored form of an entry."""
    return {"url": url, "display_name": display_name, "added": time.time()}
