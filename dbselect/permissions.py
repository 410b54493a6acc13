"""Who may do what: the admins of one database, and server-wide operators.

**Admin** has one definition, the user model's own `is_admin` (accounts.models.User: active,
and staff or superuser), asked of the user signed in to the database the session works on
(users live in each file). `is_admin()` and `admin_required` are the only places that ask it;
the admins of a database act on that database (snapshots, migrations, protection).

**Operators.** Being an admin of a file says nothing about the server: anyone can make a file
in which they are admin. Powers that reach the whole server (the engines page and dispose,
other sessions' paths, migrating a file, later the catalog and creating or archiving
databases) need an *operator*:

    an admin (is_admin, as above) of one of DBSELECT["OPERATOR_DATABASES"]
    (default: databases/default/nukeworks.sqlite), signed in to it in this browser session.

The sign-in is the one the session keeps for that database (dbselect.session.login_for),
verified against that very file on each check: a password change, deactivation or demotion
there ends the operator power at once. The session may be working on any database meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, wraps
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare

from audit import log as audit_log
from dbselect import engines, session
from dbselect.conf import get_config
from dbselect.files.paths import real_path

DENIED = (
    "Only an operator can do this: an administrator signed in to one of the operator "
    "databases ({names})."
)
_CACHE_ATTR = "nukeworks_is_operator"
ADMIN_DENIED = "Only an administrator of this database can do this."


def operator_databases() -> list[str]:
    """Return the real paths of the operator databases."""
    config = get_config()
    return _real_paths(
        tuple(map(str, config.get("OPERATOR_DATABASES") or ())),
        str(config["DATABASES_DIR"]),
        config["DATABASE_FILENAME"],
    )


@cache
def _real_paths(configured: tuple[str, ...], databases_dir: str, filename: str) -> list[str]:
    # Resolved once per process and setting (asked on every page for the header's links): a
    # link swapped later does not move the power.
    paths = configured or (str(Path(databases_dir) / "default" / filename),)
    return [real_path(p) for p in paths]


def may_be_operator(request: HttpRequest) -> bool:
    """Return True when the session holds a sign-in to an operator database (no query).

    For showing operator links only: every operator view checks `is_operator`, which
    verifies the sign-in against the operator database itself.
    """
    logins = session.all_logins(request)
    return any(path in logins for path in operator_databases())


def is_admin(user: Any) -> bool:
    """Return True for a signed-in administrator (the user model's `is_admin`, see above)."""
    return bool(
        user is not None
        and getattr(user, "is_authenticated", False)
        and getattr(user, "is_admin", False)
    )


def _is_admin_there(path: str, login: dict[str, str]) -> bool:
    if not Path(path).is_file():
        return False
    alias = engines.register(path).alias
    try:
        user = get_user_model()._default_manager.db_manager(alias).filter(pk=login["id"]).first()
    except (DatabaseError, ValueError, KeyError):
        return False
    return bool(
        is_admin(user)
        and constant_time_compare(user.get_session_auth_hash(), login.get("hash", ""))
    )


def is_operator(request: HttpRequest) -> bool:
    """Return True when this session holds an admin sign-in to an operator database."""
    cached = getattr(request, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    logins = session.all_logins(request)
    result = any(
        path in logins and _is_admin_there(path, logins[path]) for path in operator_databases()
    )
    setattr(request, _CACHE_ATTR, result)
    return result


def operator_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer 403 to anyone but an operator (checked on the server, for every method)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_operator(request):
            names = ", ".join(operator_databases())
            raise PermissionDenied(DENIED.format(names=names))
        return view(request, *args, **kwargs)

    return wrapper


def admin_required(
    view: Callable[..., HttpResponse] | None = None,
    *,
    audit_action: str | None = None,
    message: str = ADMIN_DENIED,
) -> Any:
    """Answer 403 to anyone but an admin of the session's database (never a login redirect).

    A refused POST is audited as `audit_action` (when given) in the session's database.
    Use bare (`@admin_required`) or with arguments
    (`@admin_required(audit_action="snapshot.denied", message=...)`).
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not is_admin(getattr(request, "user", None)):
                if audit_action and request.method == "POST":
                    audit_log.record(
                        audit_action,
                        target=request.path,
                        outcome="denied",
                        detail=f"{request.method} {request.path}",
                        request=request,
                    )
                raise PermissionDenied(message)
            if not session.selected_path(request):
                # The selection middleware sends such sessions to /select-db before this runs.
                raise PermissionDenied("No database is selected.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorate if view is None else decorate(view)
