"""Template context: the session's database, for the header."""

from __future__ import annotations

import os

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from dbselect import catalog, permissions, session
from dbselect.conf import get_config


def database_label(path: str | None) -> str:
    """Return what tells this database apart from others with the same display name.

    The label of a catalog entry or of a scanned databases/<label>/ file; else the file's
    path, with the home folder shortened to "~". No file-system access.
    """
    if not path:
        return ""
    label = catalog.label_of(path)
    if label is not None:
        return label
    config = get_config()
    folder, filename = os.path.split(path)
    root = os.path.normpath(os.path.abspath(config["DATABASES_DIR"]))
    if filename == config["DATABASE_FILENAME"] and os.path.dirname(folder) == root:
        return os.path.basename(folder)
    home = os.path.expanduser("~")
    if home not in ("", "/") and path.startswith(home + os.sep):
        return "~" + path[len(home) :]
    return path


def selected_database(request: HttpRequest) -> dict[str, object]:
    """Expose the selected database, and whether to show operator links, to every template.

    `is_operator` only says the session holds a sign-in to an operator database (no query):
    it shows the links; the operator views verify that sign-in against the file themselves.
    `selected_db_kind` is "postgresql" for a database of the catalog (the header marks it),
    "sqlite" for a file. `selected_db_label` tells two databases of the same display name
    apart (their label, else their path).
    """
    selected = session.selected_path(request)
    return {
        "selected_db_path": selected,
        "selected_db_kind": catalog.KIND if catalog.is_target(selected) else "sqlite",
        "selected_db_name": session.selected_name(request),
        "selected_db_label": database_label(selected),
        "is_operator": SimpleLazyObject(lambda: permissions.may_be_operator(request)),
    }
