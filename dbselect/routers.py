"""The database router: every ORM read and write goes to the request's selected database."""

from __future__ import annotations

from typing import Any

from dbselect.state import get_active_alias


class SessionRouter:
    """Route to the alias activated by DatabaseSelectionMiddleware; None lets Django decide."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        return get_active_alias()

    def db_for_write(self, model: type, **hints: Any) -> str | None:
        return get_active_alias()

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # Objects loaded from two different database files are never related.
        return obj1._state.db == obj2._state.db

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return True
