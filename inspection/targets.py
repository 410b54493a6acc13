"""Which database file a command names: a catalog label or a path typed by an operator.

A label is looked up in the catalog (`databases/<label>/nukeworks.sqlite`). Anything that looks
like a path (a separator, a dot, `~`) is a path: made absolute, normalised like a path typed in
the selector, and checked read-only (dbselect.files.validation.read_header: it exists, is a
regular file with a SQLite header). Nothing here creates a file, and nothing opens one for
writing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dbselect import scanner
from dbselect.files.paths import PathRejected, normalize_user_path
from dbselect.files.validation import SqliteHeader, ValidationFailed, read_header
from dbselect.layout import catalog_label


class TargetError(Exception):
    """The argument names no database file that can be read; the message says why."""


@dataclass(frozen=True)
class Target:
    """A database file to inspect or check."""

    path: str
    # Its catalog label; None for a file outside databases/<label>/.
    label: str | None
    # Its header, None for a file this process works on (read through SQLite only).
    header: SqliteHeader | None

    @property
    def name(self) -> str:
        return self.label or self.path


def looks_like_path(text: str) -> bool:
    """Return True when `text` is meant as a path rather than a label."""
    return any(c in text for c in ("/", "\\", ".", "~")) or text.startswith("//")


def resolve(text: str) -> Target:
    """Return the database file `text` names (a label, or a path); raise TargetError."""
    text = str(text).strip()
    if not looks_like_path(text):
        try:
            path = scanner.labelled_path(text)
        except LookupError as exc:
            raise TargetError(
                f"{exc} To inspect another file, give its path (for example ./{text}.sqlite)."
            ) from None
        return Target(path, text, header=_header(path))
    expanded = os.path.expanduser(text)
    if not (expanded.startswith(("//", "\\\\")) or os.path.isabs(expanded)):
        expanded = os.path.abspath(expanded)
    try:
        path = normalize_user_path(expanded)
    except PathRejected as exc:
        raise TargetError(str(exc)) from None
    return of_path(path)


def of_path(path: str) -> Target:
    """Return the target of an absolute, normalised `path` (a session's database)."""
    return Target(path, catalog_label(path), header=_header(path))


def _header(path: str) -> SqliteHeader | None:
    try:
        header, _ = read_header(path)
    except ValidationFailed as exc:
        raise TargetError(f"{path}: {exc.reason}") from None
    return header
