"""Template context: the session's database, for the header."""

from __future__ import annotations

from django.http import HttpRequest

from dbselect import session


def selected_database(request: HttpRequest) -> dict[str, str | None]:
    """Expose the selected database's path and display name to every template."""
    return {
        "selected_db_path": session.selected_path(request),
        "selected_db_name": session.selected_name(request),
    }
