"""Which database a command names: a catalog label or a path typed by an operator.

A label is looked up in the catalog (`databases/<label>/nukeworks.sqlite`, else a PostgreSQL
database an operator registered: dbselect.catalog, also named `postgresql:<label>`). Anything
that looks
like a path (a separator, a dot, `~`) is a path: made absolute, normalised like a path typed in
the selector, and checked read-only (dbselect.files.validation.read_header: it exists, is a
regular file with a SQLite header). Nothing here creates a file, and nothing opens one for
writing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dbselect import catalog, scanner
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
    # A PostgreSQL database of the catalog (`path` is then its target, postgresql:<label>).
    entry: catalog.CatalogEntry | None = None

    @property
    def name(self) -> str:
        return self.label or self.path

    @property
    def is_postgres(self) -> bool:
        return self.entry is not None

    @property
    def kind(self) -> str:
        return catalog.KIND if self.entry is not None else "sqlite"


def looks_like_path(text: str) -> bool:
    """Return True when `text` is meant as a path rather than a label."""
    return any(c in text for c in ("/", "\\", ".", "~")) or text.startswith("//")


def resolve(text: str) -> Target:
    """Return the database file `text` names (a label, or a path); raise TargetError."""
    text = str(text).strip()
    if catalog.is_target(text):
        return of_registered(text)
    if not looks_like_path(text):
        try:
            path = scanner.labelled_path(text)
        except LookupError as exc:
            if catalog.get(text) is not None:
                return of_registered(catalog.target_for(text))
            registered = ", ".join(e.label for e in catalog.entries())
            also = f" Registered PostgreSQL databases: {registered}." if registered else ""
            raise TargetError(
                f"{exc}{also} To inspect another file, give its path (for example ./{text}.sqlite)."
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
    """Return the target of an absolute, normalised `path` (a session's database), or of a
    PostgreSQL database's target (postgresql:<label>)."""
    if catalog.is_target(path):
        return of_registered(path)
    return Target(path, catalog_label(path), header=_header(path))


def of_registered(target: str) -> Target:
    """Return the target of a PostgreSQL database of the catalog; raise TargetError when it is
    not (or no longer) registered."""
    entry = catalog.entry_for_target(target)
    if entry is None:
        raise TargetError(f"No PostgreSQL database is registered as {catalog.label_of(target)!r}.")
    return Target(entry.target, entry.label, header=None, entry=entry)


def _header(path: str) -> SqliteHeader | None:
    try:
        header, _ = read_header(path)
    except ValidationFailed as exc:
        raise TargetError(f"{path}: {exc.reason}") from None
    return header
