"""Lists that stay fast on a million rows: bounded counts, whitelisted sorts, pages of ids.

- **Counts** are exact up to COUNT_LIMIT rows (a count over a subquery that stops there);
  beyond it PostgreSQL's planner estimate (`pg_class.reltuples`) is shown for an unfiltered
  table, and otherwise "10,000+" (SQLite keeps no estimate).
- **Sorts** come from a whitelist (`?sort=name`, `?sort=-name`, ...), each on an indexed
  column with the id as a stable tie-breaker; anything else falls back to the default.
- **A page** is read as ids first (an index-only scan with LIMIT/OFFSET, one row more than the
  page to know whether there is a next page), then the page's rows by id, with annotations
  (e.g. project counts) computed for those rows only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import QuerySet
from django.http import Http404

COUNT_LIMIT = 10_000
PER_PAGE = 50
MAX_PAGE = 1_000_000
WINDOW = 2  # page numbers shown either side of the current page


@dataclass(frozen=True)
class Sort:
    key: str
    label: str
    order: tuple[str, ...]


def sort_options(columns: dict[str, tuple[str, str]]) -> dict[str, Sort]:
    """Return `key` and `-key` sorts for {key: (label, field)}, each with the id as tie-breaker."""
    options: dict[str, Sort] = {}
    for key, (label, column) in columns.items():
        options[key] = Sort(key, label, (column, "id"))
        options[f"-{key}"] = Sort(f"-{key}", label, (f"-{column}", "-id"))
    return options


def chosen_sort(request, options: dict[str, Sort], default: str) -> Sort:
    """Return the requested sort when whitelisted, else the default one."""
    return options.get(request.GET.get("sort", ""), options[default])


@dataclass(frozen=True)
class Total:
    """How many rows a list has: `value` exact, or at least / about it."""

    value: int
    exact: bool
    estimated: bool = False

    def __str__(self) -> str:
        if self.exact:
            return f"{self.value:,}"
        if self.estimated:
            return f"about {self.value:,}"
        return f"{self.value:,}+"


def _estimate(queryset: QuerySet) -> int | None:
    """PostgreSQL's row estimate of the queryset's table, or None (other engines, no stats)."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
    except DatabaseError:
        return None
    if not row or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


def count(queryset: QuerySet, *, filtered: bool, limit: int | None = None) -> Total:
    """Count the rows exactly up to `limit` (COUNT_LIMIT); above it an estimate or a lower
    bound."""
    limit = COUNT_LIMIT if limit is None else limit
    value = queryset.order_by()[: limit + 1].count()
    if value <= limit:
        return Total(value, exact=True)
    if not filtered:
        estimate = _estimate(queryset)
        if estimate is not None and estimate > limit:
            return Total(estimate, exact=False, estimated=True)
    return Total(limit, exact=False)


@dataclass
class Page:
    number: int
    object_list: list[Any]
    has_next: bool
    total: Total
    per_page: int = PER_PAGE
    numbers: list[int | None] = field(default_factory=list)

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def previous_page_number(self) -> int:
        return self.number - 1

    @property
    def next_page_number(self) -> int:
        return self.number + 1

    @property
    def num_pages(self) -> int | None:
        """The number of pages when the total is exact, else None."""
        if not self.total.exact:
            return None
        return max(1, -(-self.total.value // self.per_page))

    @property
    def start_index(self) -> int:
        return (self.number - 1) * self.per_page + 1 if self.object_list else 0

    @property
    def end_index(self) -> int:
        return (self.number - 1) * self.per_page + len(self.object_list)

    @property
    def is_paginated(self) -> bool:
        return self.has_next or self.has_previous


def page_numbers(number: int, last: int | None, has_next: bool) -> list[int | None]:
    """Page numbers to link: the first, a window around `number`, the last when known; None
    marks a gap."""
    high = last if last is not None else number + (1 if has_next else 0)
    wanted = {1, *range(max(1, number - WINDOW), min(high, number + WINDOW) + 1)}
    if last is not None:
        wanted.add(last)
    result: list[int | None] = []
    previous = 0
    for n in sorted(wanted):
        if n - previous > 1:
            result.append(None)
        result.append(n)
        previous = n
    if last is None and has_next:
        result.append(None)  # more pages, how many is not counted
    return result


def _reversed(order_by):
    """The opposite of one ORDER BY item: a field name ("-name" <-> "name") or an expression."""
    if isinstance(order_by, str):
        return order_by[1:] if order_by.startswith("-") else f"-{order_by}"
    expression = order_by.copy() if hasattr(order_by, "reverse_ordering") else order_by.asc()
    return expression.reverse_ordering()


def page_number(request) -> int:
    raw = request.GET.get("page", "1")
    if raw == "last":
        return -1
    try:
        number = int(raw)
    except ValueError as exc:
        raise Http404("Invalid page.") from exc
    if not 1 <= number <= MAX_PAGE:
        raise Http404("Invalid page.")
    return number


def paginate(
    request,
    queryset: QuerySet,
    order: tuple[str, ...],
    *,
    filtered: bool,
    rows: QuerySet | None = None,
    per_page: int = PER_PAGE,
) -> Page:
    """Return the requested page of `queryset` in `order` (see the module's docstring).

    `rows` is the queryset the page's objects are read from (by id), e.g. with
    select_related or annotations; `queryset` by default.
    """
    total = count(queryset, filtered=filtered)
    number = page_number(request)
    last = max(1, -(-total.value // per_page)) if total.exact else None
    if number == -1:
        if last is None:
            raise Http404("The last page is not known for so many rows.")
        number = last
    if last is not None and number > last:
        raise Http404("No such page.")
    offset = (number - 1) * per_page
    ordered = queryset.order_by(*order)
    if last is not None and number > 1 and offset > total.value // 2:
        # Closer to the end: skip from the end in the reverse order (half the rows at most).
        reverse = tuple(_reversed(f) for f in order)
        end = total.value - offset  # rows from this page's first row to the end
        take = min(per_page, end)
        skip = end - take
        ids = list(queryset.order_by(*reverse).values_list("pk", flat=True)[skip : skip + take])
        ids.reverse()
        has_next = number < last
    else:
        ids = list(ordered.values_list("pk", flat=True)[offset : offset + per_page + 1])
        has_next = len(ids) > per_page
        ids = ids[:per_page]
    if not ids and number > 1:
        raise Http404("No such page.")
    by_id = {obj.pk: obj for obj in (rows if rows is not None else queryset).filter(pk__in=ids)}
    page = Page(
        number=number,
        object_list=[by_id[pk] for pk in ids if pk in by_id],
        has_next=has_next,
        total=total,
        per_page=per_page,
    )
    page.numbers = page_numbers(number, last, has_next)
    return page


def query_string(request, **changes: Any) -> str:
    """Return the request's query string with `changes` (None removes a key)."""
    params = request.GET.copy()
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"
