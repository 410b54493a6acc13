"""Settings of the static PostgreSQL baseline in bench_postgres.py: the project as a plain
Django site whose `default` is one PostgreSQL database (env BENCH_STATIC_PG_URL).

As bench/static_settings.py (no dbselect middleware, no router), with the connection settings
a catalog entry's alias gets (dbselect.catalog.django_settings: psycopg, connect_timeout,
application_name, the project's CONN_MAX_AGE), so the two runs differ only by the routing.
"""

import os

from bench.static_settings import *  # noqa: F403
from bench.static_settings import DATABASES
from dbselect.catalog.dsn import parse

_url = parse(os.environ["BENCH_STATIC_PG_URL"])
DATABASES = {
    "default": {
        **DATABASES["default"],
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.dbname,
        "USER": _url.user,
        "PASSWORD": _url.password,
        "HOST": _url.host,
        "PORT": str(_url.port),
        "CONN_HEALTH_CHECKS": bool(DATABASES["default"].get("CONN_MAX_AGE")),
        "OPTIONS": {"connect_timeout": 5, "application_name": "nukeworks"},
    }
}
