"""Keyset (cursor) pagination: fast on big databases, no COUNT(*) of the whole table."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class KeysetPagination(CursorPagination):
    """Pages of `page_size` rows after an opaque cursor, ordered by `ordering` (default: id).

    The ordering must be a unique, indexed column (or end with one), so each page is an index
    range scan whatever the table's size.
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "id"
