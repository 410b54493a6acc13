"""PostgreSQL's client programs (pg_dump, pg_restore): which one, with which environment.

Snapshots (snapshots.pg) and copies (provisioning.pgcopy) run Debian's client programs
against a catalog entry's server. Both pick the program the same way, give it only libpq's
variables for the entry (the password in PGPASSWORD, never on a command line where `ps`
shows it) and show people its error output without the password.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil

from dbselect.catalog.dsn import PostgresURL
from dbselect.conf import setting

# How much of a client program's error output is kept for people (its last characters).
MAX_ERROR_TEXT = 600


def version_of(path: str) -> int:
    """Return the major version of a Debian client program from its path (0 if unknown)."""
    match = re.search(r"/postgresql/(\d+)/bin/", path)
    return int(match.group(1)) if match else 0


def installed_versions(name: str) -> list[int]:
    """Return the major versions of `name` installed under /usr/lib/postgresql/."""
    return sorted(version_of(p) for p in glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))


@functools.cache
def program(name: str, major: int) -> str | None:
    """Return the path of client program `name` for a server of version `major`, or None.

    The same major version when installed (Debian: /usr/lib/postgresql/<major>/bin/), else the
    nearest newer one (pg_dump and pg_restore read and write older servers), else the one on
    PATH. An older pg_dump refuses a newer server, so it is never picked on purpose.
    """
    installed = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    usable = sorted((p for p in installed if version_of(p) >= major), key=version_of)
    return usable[0] if usable else shutil.which(name)


def environment(url: PostgresURL, application: str) -> dict[str, str]:
    """The environment of a client program: libpq's variables for `url`, and nothing else of
    this process's PG* settings (a PGSERVICE or PGOPTIONS of the server must not apply)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(url.environment())
    env["PGCONNECT_TIMEOUT"] = str(int(setting("POSTGRES_CONNECT_TIMEOUT")))
    env["PGAPPNAME"] = application
    env["LC_ALL"] = "C"
    return env


def error_text(raw: bytes, url: PostgresURL) -> str:
    """Return the last lines a client program wrote, without any password."""
    text = raw.decode("utf-8", "replace").strip()
    if url.password:
        text = text.replace(url.password, "********")
    return text[-MAX_ERROR_TEXT:] or "no error message"
