"""The browse widget's back end: folders and database files under one folder.

Only folders and files named like databases are listed, never hidden entries, and with
allowed roots set, nothing whose real location (symlinks resolved) lies outside them. Every
file-system call runs under `bounded()`, so a dead network share cannot hang the worker.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from dbselect.files.paths import (
    PathRejected,
    bounded,
    check_allowed,
    is_allowed,
    normalize_user_path,
)

DATABASE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
MAX_ENTRIES = 500


def list_folder(raw_dir: object) -> dict[str, Any]:
    """Return the sub-folders and database files of a folder; raise PathRejected if unusable."""
    folder = normalize_user_path(raw_dir)
    check_allowed(folder)

    def _scan() -> list[dict[str, str]]:
        st = os.stat(folder)
        if not stat.S_ISDIR(st.st_mode):
            raise PathRejected("This path is not a folder.")
        entries = []
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                    is_file = not is_dir and entry.is_file()
                except OSError:
                    continue
                if is_dir:
                    kind = "folder"
                elif is_file and entry.name.lower().endswith(DATABASE_SUFFIXES):
                    kind = "database"
                else:
                    continue
                # realpath(): a symlink inside an allowed root may point outside it.
                if not is_allowed(entry.path):
                    continue
                entries.append({"name": entry.name, "path": entry.path, "type": kind})
        entries.sort(key=lambda e: (e["type"] != "folder", e["name"].lower()))
        return entries

    try:
        entries = bounded(_scan)
    except FileNotFoundError:
        raise PathRejected("This folder does not exist.") from None
    except NotADirectoryError:
        raise PathRejected("This path is not a folder.") from None
    except PermissionError:
        raise PathRejected("The server is not allowed to read this folder.") from None
    except OSError as exc:
        raise PathRejected(f"The folder cannot be listed: {exc.strerror or exc}.") from None
    parent = os.path.dirname(folder)
    return {
        "dir": folder,
        "parent": parent if parent != folder and bounded(lambda: is_allowed(parent)) else None,
        "entries": entries[:MAX_ENTRIES],
        "truncated": len(entries) > MAX_ENTRIES,
    }
