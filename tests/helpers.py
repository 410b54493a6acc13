"""Helpers for tests: real requests, real files."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connections
from django.test import Client

from dbselect import engines, state


def backup_copy(source: str | Path, target: str | Path) -> None:
    """Copy a SQLite database with the backup API (consistent even in WAL mode)."""
    src = sqlite3.connect(str(source))
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def add_rows(
    path: Path,
    *,
    name: str | None = None,
    companies: tuple[str, ...] | list[str] = (),
    users: tuple[tuple[str, str, bool], ...] | list[tuple[str, str, bool]] = (),
) -> None:
    """Write a display name, companies and users into a database file through the ORM."""
    from django.contrib.auth import get_user_model

    from dbselect.models import SystemSetting
    from nukeworks.companies.models import Company

    engine = engines.register(str(path))
    with state.override(engine.alias):
        if name is not None:
            SystemSetting.set_value(SystemSetting.DISPLAY_NAME, name)
        for company in companies:
            Company.objects.create(name=company, country="Testland")
        for username, password, is_staff in users:
            get_user_model().objects.create_user(
                username=username, password=password, is_staff=is_staff
            )
    connections[engine.alias].close()


def select(client: Client, path: str | Path, **extra: str):
    """POST the selector form for `path`."""
    return client.post("/select-db", {"path": str(path), **extra})


def sign_in(client: Client, username: str, password: str):
    """POST the login form."""
    return client.post("/login/", {"username": username, "password": password})


def messages_of(response) -> list[str]:
    """Return the texts of the messages shown on a rendered response."""
    context = response.context
    if context is None or "messages" not in context:
        return []
    return [str(m) for m in context["messages"]]


def files_beside(path: Path) -> set[str]:
    """Return the names of the files in the folder of `path`."""
    return set(os.listdir(path.parent))


def remove_database(path: Path) -> None:
    """Delete a database file and its WAL companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with_suffix = Path(str(path) + suffix)
        if with_suffix.exists():
            with_suffix.unlink()


def dump_without_audit(path: Path) -> list[str]:
    """Every schema statement and row of a file, except the audit trail (it records attempts)."""
    conn = sqlite3.connect(path)
    try:
        return [line for line in conn.iterdump() if "audit_auditentry" not in line]
    finally:
        conn.close()


def company_names(path: Path) -> set[str]:
    """Return the names of the companies stored in a database file (read directly)."""
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT name FROM companies_company")}
    finally:
        conn.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll `condition` until it holds or `timeout` seconds passed; return its last value.

    For resources that settle a moment after the client has its answer (descriptors,
    connections and threads a server releases once the response is closed): on a busy machine
    that moment can be long. The caller still asserts the exact bound afterwards.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def assert_error(response, status: int, code: str) -> dict:
    """Assert an API answer is `status` with the one error shape and `code`; return the error."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "detail"}
    assert error["code"] == code and error["message"]
    return error
