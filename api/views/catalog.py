"""GET /api/v1/databases/: the catalog, as the selector lists it (files and PostgreSQL
databases registered by operators)."""

from __future__ import annotations

import datetime
import os

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import binding
from api.serializers import CatalogEntrySerializer
from dbselect import catalog, scanner
from dbselect.files.schema import SchemaState


def _entry(db: scanner.ScannedDatabase) -> dict[str, object]:
    size: int | None = None
    modified: datetime.datetime | None = None
    if db.kind != catalog.KIND and db.path:
        # A file; a PostgreSQL database has no file to stat (its `path` is its target).
        try:
            st = os.stat(db.path)
            size = st.st_size
            modified = datetime.datetime.fromtimestamp(st.st_mtime, datetime.UTC)
        except OSError:
            pass
    progress = None
    if db.preparing is not None:
        # Being built (provisioning): no file yet, its progress instead.
        state = "preparing"
        progress = {key: db.preparing[key] for key in binding.PROGRESS_KEYS}
    elif db.not_ready:
        state = "not_ready"
    elif db.state in (SchemaState.UP_TO_DATE, SchemaState.NEEDS_MIGRATION, SchemaState.NEWER):
        state = db.state.value
    else:
        state = "invalid"
    detail = db.error or (db.state.label if db.state else "")
    if progress is not None:
        detail = progress["message"]
    return {
        "label": db.label,
        "display_name": db.display_name,
        "kind": db.kind,
        # Where a PostgreSQL database lives, as the selector shows it (host:port/dbname: no
        # user name, no password); null for a file.
        "location": (db.location or None) if db.kind == catalog.KIND else None,
        "size": size,
        "modified": modified,
        "state": state,
        "detail": detail,
        "progress": progress,
    }


class CatalogView(APIView):
    """The databases of this server's catalog (databases/<label>/ and the PostgreSQL databases
    registered by operators), with their state.

    Visible to anyone who can see the selector: no sign-in needed.
    """

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses=CatalogEntrySerializer(many=True))
    def get(self, request: Request) -> Response:
        entries = [_entry(db) for db in scanner.scan()]
        return Response(CatalogEntrySerializer(entries, many=True).data)
