"""PostgreSQL connection URLs of catalog entries: parsing, checking, redacting.

A catalog entry's URL (`postgresql://user:password@host:port/dbname`) is typed by an operator
only. The password never leaves this module in any text meant for people: `redact()` is what
pages, logs, audit entries and command output show.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

SCHEMES = ("postgresql", "postgres")
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
# A database name NukeWorks creates or renames on the server (CREATE DATABASE, restore swap).
DBNAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
REDACTED = "********"


class BadURL(ValueError):
    """The URL is not a usable PostgreSQL URL; the message says why (never the password)."""


@dataclass(frozen=True)
class PostgresURL:
    """The parts of a PostgreSQL URL, checked."""

    user: str
    # Never in a repr: tracebacks and debug output print dataclasses.
    password: str = field(repr=False)
    host: str
    port: int
    dbname: str
    # Query parameters (sslmode=require, …), passed to the driver as they are.
    options: tuple[tuple[str, str], ...] = ()

    def with_dbname(self, dbname: str) -> PostgresURL:
        """Return the same server and credentials, for another database."""
        return PostgresURL(self.user, self.password, self.host, self.port, dbname, self.options)

    def url(self) -> str:
        """Return the URL, password included (for the driver and pg_dump only)."""
        return self._format(urllib.parse.quote(self.password, safe=""))

    def redacted(self) -> str:
        """Return the URL with the password replaced by asterisks (shown as they are, not
        percent-encoded)."""
        return self._format(REDACTED if self.password else "")

    def _format(self, password: str) -> str:
        auth = urllib.parse.quote(self.user, safe="")
        if password:
            auth += ":" + password
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?{urllib.parse.urlencode(self.options)}" if self.options else ""
        dbname = urllib.parse.quote(self.dbname, safe="")
        return f"postgresql://{auth}@{host}:{self.port}/{dbname}{query}"

    def server(self) -> str:
        """Return `host:port/dbname`: what a person needs to recognise the database."""
        return f"{self.host}:{self.port}/{self.dbname}"

    def libpq_params(self) -> dict[str, str]:
        """Return psycopg/libpq keyword arguments (password included)."""
        params = {
            "host": self.host,
            "port": str(self.port),
            "dbname": self.dbname,
            "user": self.user,
            **dict(self.options),
        }
        if self.password:
            params["password"] = self.password
        return params

    def environment(self) -> dict[str, str]:
        """Return libpq environment variables for pg_dump/pg_restore (the password is never
        put on a command line, where `ps` would show it)."""
        env = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.dbname,
        }
        if self.password:
            env["PGPASSWORD"] = self.password
        options = dict(self.options)
        if "sslmode" in options:
            env["PGSSLMODE"] = options["sslmode"]
        return env


ALLOWED_OPTIONS = {"sslmode", "sslrootcert", "application_name", "connect_timeout"}


def parse(url: object) -> PostgresURL:
    """Check and split a PostgreSQL URL; raise BadURL (without echoing the password)."""
    if not isinstance(url, str) or not url.strip():
        raise BadURL("Give a PostgreSQL URL: postgresql://user:password@host:port/dbname.")
    text = url.strip()
    if len(text) > 2000 or any(ord(c) < 32 for c in text):
        raise BadURL("The URL is too long or holds control characters.")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port or 5432
    except ValueError:
        raise BadURL("The URL cannot be parsed (is the port a number?).") from None
    if parts.scheme not in SCHEMES:
        raise BadURL("Only postgresql:// URLs can be registered.")
    if not parts.hostname:
        raise BadURL("The URL names no host (postgresql://user:password@host:port/dbname).")
    dbname = urllib.parse.unquote(parts.path.lstrip("/"))
    if not dbname:
        raise BadURL("The URL names no database (…/dbname at its end).")
    if not DBNAME_PATTERN.match(dbname):
        raise BadURL(
            "The database name may hold letters, digits, _ and - only (at most 63 characters)."
        )
    if not parts.username:
        raise BadURL("The URL names no user (postgresql://user:password@host…).")
    options = tuple(urllib.parse.parse_qsl(parts.query))
    unknown = sorted({k for k, _ in options} - ALLOWED_OPTIONS)
    if unknown:
        raise BadURL(f"Unsupported URL parameters: {', '.join(unknown)}.")
    return PostgresURL(
        user=urllib.parse.unquote(parts.username),
        password=urllib.parse.unquote(parts.password or ""),
        host=parts.hostname,
        port=port,
        dbname=dbname,
        options=options,
    )


def redact(url: str) -> str:
    """Return `url` with any password hidden; a URL that does not parse is hidden entirely."""
    try:
        return parse(url).redacted()
    except BadURL:
        return "postgresql://" + REDACTED


def check_label(label: object) -> str:
    """Return `label` when it may name a catalog entry; raise BadURL otherwise."""
    if not isinstance(label, str) or not LABEL_PATTERN.match(label):
        raise BadURL("A label is 1 to 40 letters, digits, _ or -, starting with a letter or digit.")
    return label
