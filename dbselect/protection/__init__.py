"""Protected databases and maintenance mode.

An admin of a database can mark it *protected*: from then on every write to it is refused,
for everybody, admins included (403 page; 423 for API clients), until an admin switches on
*maintenance mode for themselves*: a grant kept in the database itself (so every worker and
server sees it), for that user only, with an expiry. Writes made under a grant are allowed
and each request's writes are audited: who, when and what (statement kind and table; the
values are not logged).

What "a write" is: an INSERT, UPDATE, DELETE or REPLACE, or a schema change, on any table but
the audit trail (it records the refusals themselves), the protection settings (so the admin
can lift it) and a user's `last_login` (so signing in still works on a protected database).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.utils import timezone

from dbselect import permissions
from dbselect.models import SystemSetting

PROTECTED_KEY = "protected"
GRANT_PREFIX = "maintenance:"
# How long a maintenance grant lasts unless the admin ends it sooner (seconds).
DEFAULT_GRANT_SECONDS = 30 * 60
MAX_GRANT_SECONDS = 8 * 3600

_WRITE_VERBS = {"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"}
_QUOTED = re.compile(r'"([^"]+)"')
_EXEMPT_TABLES = {"audit_auditentry", "system_settings"}
_LAST_LOGIN = re.compile(
    r'^\s*UPDATE\s+"accounts_user"\s+SET\s+"last_login"\s*=\s*%s\s+WHERE', re.IGNORECASE
)


class DatabaseProtected(Exception):
    """A write to a protected database without a maintenance grant."""

    def __init__(self, statement: str) -> None:
        super().__init__(statement)
        self.statement = statement


def is_protected(alias: str) -> bool:
    """Return True when the database behind `alias` is marked protected."""
    return SystemSetting.get_value(PROTECTED_KEY, using=alias) == "1"


def set_protected(alias: str, protected: bool) -> None:
    """Mark the database protected (or not)."""
    SystemSetting.set_value(PROTECTED_KEY, "1" if protected else "0", using=alias)


def _grant_key(user_id: object) -> str:
    return f"{GRANT_PREFIX}{user_id}"


def grant_expiry(alias: str, user_id: object) -> float | None:
    """Return when `user_id`'s maintenance grant ends (epoch seconds), if one is active."""
    value = SystemSetting.get_value(_grant_key(user_id), using=alias)
    try:
        expiry = float(value) if value else None
    except ValueError:
        return None
    return expiry if expiry is not None and expiry > time.time() else None


def start_maintenance(alias: str, user_id: object, seconds: int) -> float:
    """Give `user_id` a maintenance grant for `seconds` (capped); return its expiry."""
    seconds = max(60, min(int(seconds), MAX_GRANT_SECONDS))
    expiry = time.time() + seconds
    SystemSetting.set_value(_grant_key(user_id), f"{expiry:.0f}", using=alias)
    return expiry


def end_maintenance(alias: str, user_id: object) -> None:
    """End `user_id`'s maintenance grant now."""
    SystemSetting.objects.db_manager(alias).filter(key=_grant_key(user_id)).delete()


def write_target(sql: str) -> str | None:
    """Return the table a statement writes, or None when it reads or is exempt.

    Django quotes every identifier: the first quoted name after the verb is the table.
    """
    words = sql.lstrip().split(None, 1)
    if not words or words[0].upper() not in _WRITE_VERBS or _LAST_LOGIN.match(sql):
        return None
    quoted = _QUOTED.search(sql)
    table = quoted.group(1) if quoted else "?"
    return None if table in _EXEMPT_TABLES else table


@dataclass
class WriteGuard:
    """A Django execute wrapper refusing or recording the writes of one request.

    Nothing is read until the request's first write: read-only requests cost no query.
    """

    alias: str
    user: Any
    writes: list[str] = field(default_factory=list)
    _protected: bool | None = None
    _allowed: bool | None = None

    def protected(self) -> bool:
        """Return whether the database is protected (read once per request)."""
        if self._protected is None:
            self._protected = is_protected(self.alias)
        return self._protected

    def grant_expiry(self) -> float | None:
        """Return when the user's maintenance grant ends, if they are an admin holding one."""
        if not permissions.is_admin(self.user):
            return None
        return grant_expiry(self.alias, self.user.pk)

    def allowed(self) -> bool:
        """Return whether this request may write (decided once, at its first write)."""
        if self._allowed is None:
            self._allowed = not self.protected() or self.grant_expiry() is not None
        return self._allowed

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        table = write_target(sql)
        if table is not None:
            kind = sql.split(None, 1)[0].upper()
            if not self.allowed():
                raise DatabaseProtected(f"{kind} {table}")
            if self.protected():
                self.writes.append(f"{kind} {table}")
        return execute(sql, params, many, context)


def install(alias: str, guard: WriteGuard) -> Any:
    """Return the context manager that applies `guard` to `alias`'s queries."""
    return connections[alias].execute_wrapper(guard)


def now_text() -> str:
    """Return the current time for audit details."""
    return timezone.now().isoformat(timespec="seconds")
