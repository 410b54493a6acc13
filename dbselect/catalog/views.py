"""The catalog page (/catalog/): the PostgreSQL databases sessions may select (operators only).

It lists every entry with its state, checked live and read-only (dbselect.catalog.registry
.check: one short connection per entry, all entries at once, each with a short connect
timeout), registers a database (label, URL, display name) and removes one after a
confirmation. Registering and removing go through dbselect.catalog.registry, as `manage.py
catalog` does: checked first, nothing stored on error, audited with the redacted URL.

The URL holds a password: it is typed into a password input that is never filled back in, the
page shows only its redacted form, and Django's error reports never see it
(`sensitive_post_parameters`).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from audit import log as audit_log
from dbselect import catalog
from dbselect.catalog import registry
from dbselect.catalog.dsn import check_label
from dbselect.catalog.forms import AddEntryForm
from dbselect.engines.session_counts import count_sessions
from dbselect.files.schema import SchemaState
from dbselect.permissions import operator_required

# Seconds the page waits for each server to accept a connection (all entries in parallel).
CHECK_CONNECT_TIMEOUT = 2
MAX_PARALLEL_CHECKS = 8

UP_TO_DATE = "up_to_date"
NEEDS_MIGRATION = "needs_migration"
UNREACHABLE = "unreachable"
UNUSABLE = "unusable"


@dataclass(frozen=True)
class EntryState:
    """One entry of the page and what its live check found."""

    entry: catalog.CatalogEntry
    # UP_TO_DATE, NEEDS_MIGRATION, UNREACHABLE or UNUSABLE (newer, not NukeWorks, unfinished).
    state: str
    label: str
    reason: str = ""
    display_name: str = ""

    @property
    def ok(self) -> bool:
        return self.state == UP_TO_DATE


def _short_timeout(entry: catalog.CatalogEntry) -> catalog.CatalogEntry:
    """The entry with a short connect timeout, unless its URL sets its own."""
    options = dict(entry.url.options)
    if "connect_timeout" in options:
        return entry
    options["connect_timeout"] = str(CHECK_CONNECT_TIMEOUT)
    url = dataclasses.replace(entry.url, options=tuple(options.items()))
    return dataclasses.replace(entry, url=url)


def check_entry(entry: catalog.CatalogEntry) -> EntryState:
    """Return the live state of `entry` (read-only, short timeouts; never raises)."""
    try:
        info, reason = registry.check(_short_timeout(entry))
    except Exception as exc:  # a check must never take the page down
        return EntryState(entry, UNREACHABLE, "Unreachable", f"The check failed ({exc}).")
    if info is None:
        return EntryState(entry, UNREACHABLE, "Unreachable", reason or "")
    name = info.display_name or ""
    if info.state is SchemaState.UP_TO_DATE and not reason:
        return EntryState(entry, UP_TO_DATE, "Up to date", "", name)
    if info.state is SchemaState.NEEDS_MIGRATION:
        return EntryState(
            entry,
            NEEDS_MIGRATION,
            "Needs migration",
            f"{len(info.pending)} {ngettext('migration', 'migrations', len(info.pending))} "
            f"pending: manage.py migrate --database {entry.label}",
            name,
        )
    if info.state is SchemaState.NOT_NUKEWORKS:
        return EntryState(
            entry,
            UNUSABLE,
            info.state.label,
            "It holds no NukeWorks migrations. An empty database is filled by "
            f"manage.py migrate --database {entry.label}, then given an administrator by "
            f"manage.py ensureadmin --database {entry.label}.",
            name,
        )
    return EntryState(entry, UNUSABLE, info.state.label, reason or "", name)


def check_entries(entries: list[catalog.CatalogEntry]) -> list[EntryState]:
    """Check every entry at once: an unreachable server costs its timeout once, not per entry."""
    if not entries:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_CHECKS, len(entries))) as pool:
        return list(pool.map(check_entry, entries))


def _page(request: HttpRequest, form: AddEntryForm, *, status: int = 200) -> HttpResponse:
    try:
        entries, problem = catalog.entries(), ""
    except Exception as exc:  # the catalog's Redis is down: say so, never a 500
        entries, problem = [], f"The catalog cannot be read ({type(exc).__name__}: {exc})."
    return render(
        request,
        "dbselect/catalog.html",
        {
            "form": form,
            "typed_url": form.redacted_url() if form.is_bound else "",
            "rows": check_entries(entries),
            "catalog_problem": problem,
            "check_timeout": CHECK_CONNECT_TIMEOUT,
        },
        status=status,
    )


@sensitive_post_parameters("url")
@never_cache
@require_http_methods(["GET", "POST"])
@operator_required
@sensitive_variables("url")
def catalog_page(request: HttpRequest) -> HttpResponse:
    """List the entries (GET); register one (POST), then back to the list."""
    if request.method != "POST":
        return _page(request, AddEntryForm())
    form = AddEntryForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    data = form.cleaned_data
    url = data["url"]
    try:
        entry, info = registry.add(
            data["label"],
            url,
            data["display_name"],
            verify=not data["no_check"],
            request=request,
        )
    except catalog.BadURL as exc:
        form.add_error(None, str(exc))
        audit_log.record(
            "catalog.add",
            target=catalog.target_for(data["label"]),
            outcome="failure",
            detail=f"{catalog.redact(url)}: {exc}",
            request=request,
        )
        return _page(request, form, status=400)
    state = f" ({info.state.label.lower()})" if info is not None else " (not checked)"
    messages.success(request, f"Registered {entry.label}: {entry.redacted_url}{state}.")
    if info is not None and info.state is not SchemaState.UP_TO_DATE:
        messages.info(
            request,
            f"Before sessions can select it: manage.py migrate --database {entry.label}"
            + (
                f", then manage.py ensureadmin --database {entry.label}"
                if info.state is SchemaState.NOT_NUKEWORKS
                else ""
            )
            + ".",
        )
    return HttpResponseRedirect(reverse("dbselect:catalog"))


def _entry_or_404(label: str) -> catalog.CatalogEntry:
    try:
        check_label(label)
    except catalog.BadURL:
        raise Http404("No such catalog entry.") from None
    entry = catalog.get(label)
    if entry is None:
        raise Http404("No database is registered under this label.")
    return entry


@never_cache
@require_http_methods(["GET", "POST"])
@operator_required
def remove_entry(request: HttpRequest, label: str) -> HttpResponse:
    """Ask for confirmation (GET); remove the entry and close its connections (POST)."""
    entry = _entry_or_404(label)
    if request.method == "POST":
        if registry.remove(entry.label, request=request):
            messages.success(
                request,
                f"Removed {entry.label} from the catalog; the database itself is left on its "
                "server. Sessions on it return to their previous database at their next request.",
            )
        else:
            messages.info(request, f"{entry.label} was no longer registered.")
        return HttpResponseRedirect(reverse("dbselect:catalog"))
    sessions = count_sessions().for_path(entry.target)
    return render(request, "dbselect/catalog_remove.html", {"entry": entry, "sessions": sessions})
