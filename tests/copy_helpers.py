"""Helpers of the tests of a database's files handled as one (copydb, restore as new, archive)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from django.db import connections
from django.test import Client

from dbselect import engines, state
from dbselect.conf import get_config
from payloads.store import PayloadStore
from tests.helpers import select, sign_in

ADMIN = ("boss", "boss-pw-1234", True)
CLERK = ("clerk", "clerk-pw-1234", False)
OPERATOR = ("root", "root-pw-1234", True)


def databases_dir() -> Path:
    return Path(get_config()["DATABASES_DIR"])


def attach(path: Path, content: bytes, name: str = "doc.pdf") -> str:
    """Store `content` in the database's payload store and attach it to its first company."""
    from nukeworks.attachments.models import Attachment
    from nukeworks.companies.models import Company

    store = PayloadStore.for_database(path)
    engine = engines.register(str(path))
    with state.override(engine.alias), store.writing():
        stored = store.put([content])
        company = Company.objects.order_by("id").first()
        Attachment.objects.create(
            company=company,
            sha256=stored.sha256,
            size=stored.size,
            name=name,
            content_type="application/pdf",
        )
    connections[engine.alias].close()
    return stored.sha256


def payload_file(path: Path, content: bytes) -> Path:
    sha = hashlib.sha256(content).hexdigest()
    return PayloadStore.for_database(path).path_of(sha)


def rows(path: Path, sql: str, *params: object) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def quick_check(path: Path) -> str:
    return rows(path, "PRAGMA quick_check")[0][0]


def display_name(path: Path) -> str | None:
    found = rows(path, "SELECT value FROM system_settings WHERE key = 'db_display_name'")
    return found[0][0] if found else None


def audit(path: Path, action: str) -> list[tuple[str, str, str]]:
    """(outcome, username, detail) of the audit entries `action` in the database at `path`."""
    return rows(
        path,
        "SELECT outcome, username, detail FROM audit_auditentry WHERE action = ? ORDER BY id",
        action,
    )


def signed_in(path: Path, user: tuple[str, str, bool]) -> Client:
    client = Client()
    assert select(client, path).status_code == 302
    assert sign_in(client, user[0], user[1]).status_code == 302
    return client


def folder_listing() -> list[str]:
    """Every entry under databases/, relative (to show nothing was created), but SQLite's
    -wal and -shm, which come and go as connections open and close."""
    root = databases_dir()
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith(("-wal", "-shm"))
    )
