"""Registering and removing catalog entries: what the `catalog` command and page both do.

Adding checks the database answers (unless told not to), stores the entry, and makes its
alias known in this process; removing stores the removal and disposes the database's engine in
every worker and on every server (the dispose feed), so sessions on it fall back at their next
request. Both are audited with the redacted URL only.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from audit import log as audit_log
from dbselect import catalog, engines
from dbselect.catalog import postgres
from dbselect.catalog.dsn import check_label, parse
from dbselect.files.validation import DatabaseInfo, ValidationFailed, refusal_reason


def check(entry: catalog.CatalogEntry) -> tuple[DatabaseInfo | None, str | None]:
    """Inspect the entry's database read-only: (info, None) or (None/info, why unusable)."""
    try:
        info = postgres.inspect(entry.target, entry.url)
    except ValidationFailed as exc:
        return None, exc.reason
    return info, refusal_reason(info)


# Error reports (DEBUG pages, mailed tracebacks) never show the URL: it holds the password.
@sensitive_variables("url")
def add(
    label: str,
    url: str,
    display_name: str = "",
    *,
    verify: bool = True,
    replace: bool = False,
    request: HttpRequest | None = None,
) -> tuple[catalog.CatalogEntry, DatabaseInfo | None]:
    """Register `url` as `label`; raise catalog.BadURL with the reason when refused.

    With `verify`, an unreachable server or a database that is not a NukeWorks one (nor an
    empty database that `migrate --database <label>` can fill) is refused before anything is
    stored.
    """
    check_label(label)
    parsed = parse(url)
    info = None
    if verify:
        probe = catalog.CatalogEntry(label, parsed, display_name)
        try:
            info = postgres.inspect(probe.target, probe.url)
        except ValidationFailed as exc:
            raise catalog.BadURL(f"Not registered: {exc.reason}") from None
    entry = catalog.add(label, url, display_name, replace=replace)
    if replace:
        # Connections to what the label named before must not serve another database.
        engines.dispose(entry.target, everywhere=True)
    engines.cache().register_entry(entry)
    audit_log.record(
        "catalog.add",
        target=entry.target,
        detail=f"{entry.redacted_url}"
        + (f", named “{entry.display_name}”" if display_name else ""),
        request=request,
    )
    return entry, info


def remove(label: str, *, request: HttpRequest | None = None) -> bool:
    """Unregister `label` and close its connections everywhere; False when it was unknown."""
    entry = catalog.get(label)
    if entry is None or not catalog.remove(label):
        return False
    engines.dispose(entry.target, everywhere=True)
    audit_log.record(
        "catalog.remove", target=entry.target, detail=entry.redacted_url, request=request
    )
    return True
