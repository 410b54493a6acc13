"""What exportdb and importdb share: finding a labelled database, the operator's name."""

from __future__ import annotations

import getpass
import os

from django.core.management.base import CommandError

from dbselect import catalog, scanner
from dbselect.catalog import postgres
from dbselect.catalog.dsn import BadURL, PostgresURL, parse
from dbselect.files.validation import ValidationFailed, inspect_database


def operator() -> str:
    """Return who runs the command, for audit entries."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "operator"
    return f"{who} (manage.py)"


def labelled_database(label: str) -> str:
    """Return the path of databases/<label>/nukeworks.sqlite, or the target
    `postgresql:<label>` of a PostgreSQL database of the catalog, validated; raise
    CommandError."""
    files = dict(scanner.database_files())
    entry = catalog.get(label) if label not in files else None
    if entry is not None:
        try:
            postgres.inspect(entry.target, entry.url)
        except ValidationFailed as exc:
            raise CommandError(f"{label} ({entry.url.server()}): {exc.reason}") from None
        return entry.target
    if label not in files:
        known = ", ".join(sorted({*files, *(e.label for e in catalog.entries())})) or "none"
        raise CommandError(f"No database labelled {label!r} (known labels: {known}).")
    path = os.path.normpath(os.path.abspath(files[label]))
    try:
        inspect_database(path)
    except ValidationFailed as exc:
        raise CommandError(f"{path}: {exc.reason}") from None
    return path


def postgres_destination(
    label: str, like: str | None, url: str | None, dbname: str | None = None
) -> PostgresURL | None:
    """Return where a new database `label` is created on a PostgreSQL server, or None (a file).

    `like`: the server and credentials of that catalog entry, with the database name
    `dbname` (default nw_<label>); `url`: a full URL given on the command line (its
    database name is the new database's).
    """
    from bundles.newdb import default_dbname

    if like and url:
        raise CommandError("Give --postgres-like or --postgres-url, not both.")
    if url:
        if dbname:
            raise CommandError("--postgres-url names the database itself; no --postgres-dbname.")
        try:
            return parse(url)
        except BadURL as exc:
            raise CommandError(str(exc)) from None
    if like:
        entry = catalog.get(like)
        if entry is None:
            known = ", ".join(e.label for e in catalog.entries()) or "none"
            raise CommandError(
                f"No PostgreSQL database is registered as {like!r} (registered: {known})."
            )
        return entry.url.with_dbname(dbname or default_dbname(label))
    if dbname:
        raise CommandError("--postgres-dbname goes with --postgres-like.")
    return None


def add_postgres_arguments(parser) -> None:
    """The options that put a new database on a PostgreSQL server (operators only)."""
    group = parser.add_argument_group("on a PostgreSQL server (instead of a SQLite file)")
    group.add_argument(
        "--postgres-like",
        metavar="LABEL",
        help="Create it on the server of the catalog entry LABEL, with its credentials "
        "(CREATE DATABASE), then register it in the catalog under the new label.",
    )
    group.add_argument(
        "--postgres-dbname",
        metavar="NAME",
        help="With --postgres-like: the new database's name on the server (default nw_<label>).",
    )
    group.add_argument(
        "--postgres-url",
        metavar="URL",
        help="Create the database this URL names (postgresql://user:password@host:port/dbname; "
        "the user needs CREATEDB); it is registered in the catalog under the new label. The "
        "password is never written anywhere but the catalog.",
    )
