"""Settings of the static baseline in bench_routing.py: the project as a plain Django site.

Everything is the project's own settings except the per-session selection: no
DatabaseSelectionMiddleware, no router, and `default` points at the benchmark's database file
(env BENCH_STATIC_DB). The `default` alias still gets the same SQLite connection options
(WAL, synchronous, busy timeout, IMMEDIATE), so the two runs differ only by the routing.
"""

import os

from nukeworks.settings import *  # noqa: F403
from nukeworks.settings import DATABASES, MIDDLEWARE

# No selection, so no per-database sign-in or protection either: Django's own authentication.
# Every dbselect middleware goes (the selection and the protection of the selected file;
# matched by package, so renamed modules inside dbselect need no change here).
MIDDLEWARE = [
    "django.contrib.auth.middleware.AuthenticationMiddleware"
    if m == "accounts.middleware.DatabaseAuthenticationMiddleware"
    else m
    for m in MIDDLEWARE
    if not m.startswith("dbselect.")
]
DATABASE_ROUTERS: list[str] = []
DATABASES = {"default": {**DATABASES["default"], "NAME": os.environ.get("BENCH_STATIC_DB", "")}}
SILENCED_SYSTEM_CHECKS = ["dbselect.E001", "dbselect.E002"]
