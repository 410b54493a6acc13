"""What the admin endpoints share: refused writes are audited as the pages audit them.

The snapshots, migrations and engines endpoints (api.views.snapshots, .migrations, .engines)
are thin layers over the services their pages use; this module only holds what they have in
common beyond api.views.base.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from audit import log as audit_log


class AuditedDenialMixin:
    """Audit a write refused to a signed-in caller (403) as `denied_action`, like the pages.

    The snapshot pages (dbselect.permissions.admin_required) record every refused POST as
    `snapshot.denied`; the migration page records `database.migrate` with outcome `denied`.
    A caller that is not authenticated at all gets 401 and is not recorded: an anonymous
    request must not be able to fill a database's audit trail.
    """

    denied_action: str | None = None

    def denied_entry(self, request: Request) -> dict[str, str]:
        """Return the target and detail of the audit entry for a refused request."""
        path = request._request.path
        return {"target": path, "detail": f"{request.method} {path}"}

    def permission_denied(
        self, request: Request, message: str | None = None, code: str | None = None
    ) -> None:
        authenticated = request.successful_authenticator is not None
        if self.denied_action and authenticated and request.method not in SAFE_METHODS:
            audit_log.record(
                self.denied_action,
                outcome="denied",
                request=request._request,
                **self.denied_entry(request),
            )
        super().permission_denied(request, message=message, code=code)  # type: ignore[misc]


def username_of(request: Request) -> str:
    """Return the caller's username, as the pages record it."""
    user: Any = request.user
    return str(user.get_username()) if user is not None and user.is_authenticated else ""
