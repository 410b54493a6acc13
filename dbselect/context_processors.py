"""Template context: the session's database, for the header."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from dbselect import operators, session


def selected_database(request: HttpRequest) -> dict[str, object]:
    """Expose the selected database and whether the session is an operator to every template.

    `is_operator` is lazy: it reads the operator database only on pages that ask.
    """
    return {
        "selected_db_path": session.selected_path(request),
        "selected_db_name": session.selected_name(request),
        "is_operator": SimpleLazyObject(lambda: operators.is_operator(request)),
    }
