"""Template context: the session's database, for the header."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from dbselect import catalog, permissions, session


def selected_database(request: HttpRequest) -> dict[str, object]:
    """Expose the selected database, and whether to show operator links, to every template.

    `is_operator` only says the session holds a sign-in to an operator database (no query):
    it shows the links; the operator views verify that sign-in against the file themselves.
    `selected_db_kind` is "postgresql" for a database of the catalog (the header marks it),
    "sqlite" for a file.
    """
    selected = session.selected_path(request)
    return {
        "selected_db_path": selected,
        "selected_db_kind": catalog.KIND if catalog.is_target(selected) else "sqlite",
        "selected_db_name": session.selected_name(request),
        "is_operator": SimpleLazyObject(lambda: permissions.may_be_operator(request)),
    }
