"""Django settings for NukeWorks.

Every value that differs between machines comes from the environment through django-environ,
in layers (nukeworks/deployment/environments.py): the process environment > `.env` >
`.env.<NUKEWORKS_ENV>` > the environment's profile defaults > the defaults written below
(development's). `manage.py env` shows what is in force and where each value comes from.

The database a request works on is *not* configured here: each browser session chooses it at
/select-db (see dbselect). The `default` alias below only serves management commands run
without `--database` and as the template from which runtime aliases are built.
"""

from __future__ import annotations

import datetime
import secrets
from pathlib import Path

from csp.constants import NONE, SELF

from nukeworks.deployment import environments, logs

BASE_DIR = Path(__file__).resolve().parent.parent

# "development" (default), "testing" or "production": from the process environment, `.env`,
# or instance/environment (`manage.py env --switch <name>`). Production turns on Secure
# cookies, HSTS and the HTTPS redirect and JSON logs (its profile), shows the machine's
# selection history only to operators, and refuses to start with DEBUG on, without its own
# SECRET_KEY or without DBSELECT_ALLOWED_ROOTS (system checks deployment.E001/E002,
# dbselect.E003).
env = environments.load(BASE_DIR)
NUKEWORKS_ENV = env.name

INSTANCE_DIR = Path(env.str("NUKEWORKS_INSTANCE_DIR", default=str(BASE_DIR / "instance")))
DATABASES_DIR = Path(env.str("NUKEWORKS_DATABASES_DIR", default=str(BASE_DIR / "databases")))


def _secret_key() -> tuple[str, bool]:
    """Return SECRET_KEY from the environment, else a machine-local generated one (True)."""
    key = env.str("SECRET_KEY", default="")
    if key:
        return key, False
    key_file = INSTANCE_DIR / "secret_key"
    try:
        return key_file.read_text().strip(), True
    except FileNotFoundError:
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        key_file.write_text(key)
        key_file.chmod(0o600)
        return key, True


# A generated key is for development: production refuses it (deployment.E002).
SECRET_KEY, NUKEWORKS_SECRET_KEY_GENERATED = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # Django's own form and widget templates, for FORM_RENDERER below.
    "django.forms",
    "rest_framework",
    # Hashed, expiring API tokens, stored in each database file (api/).
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "dbselect",
    "accounts",
    "audit",
    # Content-addressed files beside each database (attachments' bytes), carried by
    # snapshots, copies and bundles.
    "payloads",
    "snapshots",
    # Migrating a database with a snapshot as the safety net (needs dbselect and snapshots).
    "migrating",
    # Seed packages, export and import of a database's domain data (bundles/).
    "bundles",
    "nukeworks.companies",
    # Documents attached to companies and projects (bytes in the payload store).
    "nukeworks.attachments",
    # The REST API: /api/v1/databases/{label|current}/… (needs dbselect and the domain).
    "api",
    # The task queue (huey): `manage.py run_huey` is the worker `make run` starts.
    "huey.contrib.djhuey",
    # New databases built in the background from seed packages (needs bundles), behind a
    # readiness gate.
    "provisioning",
    # Environments (`manage.py env`), production safety checks, /readyz, request ids and logs.
    "nukeworks.deployment",
    # /readyz's checks and view are django-health-check's (`manage.py health_check readyz`).
    "health_check",
    # dbinspect / dbcheck and the details page's inspection and full check (a queue job).
    "inspection",
]

MIDDLEWARE = [
    # First: every response, redirects included, and every log line carry the request's id.
    "nukeworks.deployment.logs.RequestIdMiddleware",
    # Notes (once per process) a load balancer's X-Forwarded-For: deployment.W002 then warns
    # if this server keeps its sessions to itself.
    "nukeworks.deployment.balancer.BalancerSeenMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # First after security: every response gets the Content-Security-Policy, static files too.
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # Before dbselect: the fallback banner is a message added while binding the database.
    "django.contrib.messages.middleware.MessageMiddleware",
    "dbselect.middleware.DatabaseSelectionMiddleware",
    # Django's AuthenticationMiddleware, loading the user from this session's own sign-in to
    # the selected database (accounts.binding).
    "accounts.middleware.DatabaseAuthenticationMiddleware",
    # After authentication: a protected database refuses writes unless the signed-in admin
    # holds a maintenance grant (dbselect.protection).
    "dbselect.protection.middleware.ProtectedDatabaseMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "nukeworks.urls"
WSGI_APPLICATION = "nukeworks.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dbselect.context_processors.selected_database",
                "dbselect.protection.views.maintenance_banner",
            ],
        },
    },
]

# Forms render through the project's templates: templates/django/forms/{div,field}.html give
# every form labels above fields, required markers and each error next to its field.
FORM_RENDERER = "django.forms.renderers.TemplatesSetting"

# The `default` alias is the project's sample database. Requests never fall back to it: the
# middleware sends every session without a selection to /select-db, and the router sends every
# query of a request to the session's own alias.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": env.str(
            "NUKEWORKS_DEFAULT_DB", default=str(DATABASES_DIR / "default" / "nukeworks.sqlite")
        ),
        "CONN_MAX_AGE": env.int("DB_CONN_MAX_AGE", default=0),
        "OPTIONS": {},
    }
}
DATABASE_ROUTERS = ["dbselect.routers.SessionRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Settings of the per-session database selection (dbselect/conf.py holds the defaults).
DBSELECT = {
    "DATABASES_DIR": DATABASES_DIR,
    "SELECTOR_CACHE_FILE": INSTANCE_DIR / "db_selector.json",
    "ALLOWED_ROOTS": [p for p in env.str("DBSELECT_ALLOWED_ROOTS", default="").split(":") if p],
    # The explicit opt-out of dbselect.E003: production accepts unrestricted paths.
    "ALLOW_UNRESTRICTED_PATHS": env.bool("DBSELECT_ALLOW_UNRESTRICTED_PATHS", default=False),
    "BUSY_TIMEOUT": env.float("DBSELECT_BUSY_TIMEOUT", default=5.0),
    "SYNCHRONOUS": env.str("DBSELECT_SYNCHRONOUS", default="FULL"),
    "STAT_TIMEOUT": env.float("DBSELECT_STAT_TIMEOUT", default=3.0),
    # Seconds one query may run before SQLite interrupts it (a file's triggers are untrusted).
    "QUERY_TIME_LIMIT": env.float("DBSELECT_QUERY_TIME_LIMIT", default=10.0),
    # Server-wide powers (engines, dispose) belong to admins signed in to one of these
    # databases (colon-separated paths; default: databases/default/nukeworks.sqlite).
    "OPERATOR_DATABASES": [
        p for p in env.str("NUKEWORKS_OPERATOR_DATABASES", default="").split(":") if p
    ],
    # Seconds a request waits while an admin restores or migrates its database.
    "MAINTENANCE_WAIT": env.float("DBSELECT_MAINTENANCE_WAIT", default=10.0),
    "REGISTER_SCANNED_AT_STARTUP": env.bool("DBSELECT_REGISTER_SCANNED", default=True),
    # Engine cache administration (dbselect/engine_conf.py): the store the worker processes
    # share, and how many persistent connections one thread keeps at most.
    "ENGINE_STORE_DIR": INSTANCE_DIR / "engines",
    # The catalog of registered PostgreSQL databases without REDIS_URL (dbselect.catalog): a
    # JSON file (mode 0600: it holds their passwords); with REDIS_URL it lives in Redis.
    "CATALOG_FILE": env.str("NUKEWORKS_CATALOG_FILE", default=str(INSTANCE_DIR / "catalog.json")),
    "POSTGRES_CONNECT_TIMEOUT": env.int("NUKEWORKS_POSTGRES_CONNECT_TIMEOUT", default=5),
    "ENGINE_IDLE_SECONDS": env.float("DBSELECT_ENGINE_IDLE_SECONDS", default=300),
    "MAX_CONNECTIONS_PER_THREAD": env.int("DBSELECT_MAX_CONNECTIONS_PER_THREAD", default=8),
    # What the selector knows of this project: where a session lands, which view applies
    # migrations, which apps' migrations make a NukeWorks database, and its "empty" marker.
    "HOME_URL": "companies:home",
    "MIGRATE_URL": "migrating:apply",
    "SCHEMA_APPS": ["accounts", "dbselect", "companies"],
    # The API names its database in the URL and binds it itself (api.binding); /readyz binds
    # none (a load balancer's probe has no session).
    "SELF_BINDING_PREFIXES": ["/api/", "/readyz"],
    "EMPTY_MARKER_TABLE": "companies_company",
    "EMPTY_MARKER_MESSAGE": "This database holds no companies yet: is it the one you meant?",
    # The operators' "New database…" page and the progress page of a database being built.
    "CREATE_URL": "provisioning:new",
    "PREPARING_URL": "provisioning:progress",
}

# Several app servers (README "Configuration"): with REDIS_URL set, everything they must share
# lives in that Redis instead of instance/ — sessions, the caches and sign-in rate limits, the
# engine dispose feed and worker tables (dbselect.engines.redis_store), the selector's recent
# paths (dbselect.selector_cache) and the task queue — so any request may land on any server.
# Every key starts with NUKEWORKS_REDIS_PREFIX, so several sites may share one Redis.
REDIS_URL = env.str("REDIS_URL", default="")
NUKEWORKS_REDIS_PREFIX = env.str("NUKEWORKS_REDIS_PREFIX", default="nukeworks")
# How this server names itself in the shared worker tables (engines page): the host name by
# default; set it when several app servers run on one host.
NUKEWORKS_SERVER_NAME = env.str("NUKEWORKS_SERVER_NAME", default="")
# How many app servers serve this site (0: not said). More than one without REDIS_URL is
# warned about (deployment.W001); 1 silences the balancer warning (deployment.W002).
NUKEWORKS_SERVERS = env.int("NUKEWORKS_SERVERS", default=0)

# The task queue (huey via huey.contrib.djhuey; the worker is `manage.py run_huey`, started by
# `make run`). Jobs persist in a SQLite file in instance/ (synchronous=FULL: a queued job
# survives a power cut and a restart), or in Redis when REDIS_URL is set (several servers).
# Never `immediate`: web requests only queue.
INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
HUEY = {
    # In Redis the name is the prefix of the queue's keys (huey.redis.<name>).
    "name": NUKEWORKS_REDIS_PREFIX if REDIS_URL else "nukeworks",
    "immediate": False,
    # Progress and outcome live in each database's folder (provisioning.progress).
    "results": False,
    # An idle worker looks at the queue twice a second (huey's default backs off to 10 s).
    "consumer": {"workers": 2, "worker_type": "thread", "max_delay": 0.5},
    **(
        {"huey_class": "huey.RedisHuey", "url": REDIS_URL}
        if REDIS_URL
        else {
            "huey_class": "huey.SqliteHuey",
            "filename": str(INSTANCE_DIR / "huey.sqlite"),
            "fsync": True,
        }
    ),
}

# Attachments (nukeworks/attachments): the largest file accepted, in MiB.
NUKEWORKS_ATTACHMENTS = {"MAX_BYTES": env.int("NUKEWORKS_ATTACHMENT_MAX_MB", default=50) * 1024**2}

# Seed packages (bundles/): seeds/<name>/<version>/, and the size limits of bundles read.
NUKEWORKS_SEEDS_DIR = Path(env.str("NUKEWORKS_SEEDS_DIR", default=str(BASE_DIR / "seeds")))
NUKEWORKS_BUNDLE_MAX_BYTES = env.int("NUKEWORKS_BUNDLE_MAX_BYTES", default=2 * 1024**3)
NUKEWORKS_BUNDLE_UPLOAD_MAX_BYTES = env.int(
    "NUKEWORKS_BUNDLE_UPLOAD_MAX_BYTES", default=200 * 1024**2
)

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "companies:home"
LOGOUT_REDIRECT_URL = "accounts:login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# File-backed sessions, as the specification asks: the session must work before any database
# is selected, so it cannot live in one. With REDIS_URL, Django's cache backend on the
# `sessions` cache (Redis, below): not `cached_db`, which needs a session database. Redis keeps
# them across its restarts with its append-only file (README "Configuration").
SESSION_ENGINE = env.str(
    "SESSION_ENGINE",
    default=(
        "django.contrib.sessions.backends.cache"
        if REDIS_URL
        else "django.contrib.sessions.backends.file"
    ),
)
if REDIS_URL:
    SESSION_CACHE_ALIAS = "sessions"
SESSION_FILE_PATH = env.str("SESSION_FILE_PATH", default=str(INSTANCE_DIR / "sessions"))
Path(SESSION_FILE_PATH).mkdir(parents=True, exist_ok=True)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)  # production: True
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)  # production: True
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
CSRF_COOKIE_SAMESITE = "Lax"

# HTTPS in production (`manage.py check --deploy` is clean): plain-HTTP requests are redirected
# (except /healthz and /readyz, which load balancers probe over HTTP) and HSTS tells browsers
# to use HTTPS only (the production profile's defaults: on, one year, includeSubDomains,
# preload). Behind a TLS proxy, gunicorn trusts its X-Forwarded-Proto from FORWARDED_ALLOW_IPS.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

# Content-Security-Policy on every response (django-csp; Django 5.2 has no CSP of its own):
# scripts, styles and everything else only from this site's own files, never inline code
# (templates load static/ scripts and use no on*= handlers), no framing, no plugins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    },
}

# Login rate limiting (accounts/ratelimit.py): failed sign-ins per username and per client
# address within WINDOW seconds; 0 disables a limit (e.g. IP_LIMIT behind a reverse proxy
# that hides client addresses). Counted in the `ratelimit` cache, shared by the worker
# processes of this machine (of every server, in Redis, with REDIS_URL), never in a
# user-selected database file.
LOGIN_RATE_LIMIT = {
    "USERNAME_LIMIT": env.int("LOGIN_RATE_LIMIT_USERNAME", default=5),
    "IP_LIMIT": env.int("LOGIN_RATE_LIMIT_IP", default=20),
    "WINDOW": env.int("LOGIN_RATE_LIMIT_WINDOW", default=900),
}


def _cache(variable: str, local: str, purpose: str) -> dict:
    """The cache `variable` names; else, with REDIS_URL, Redis under its own key prefix; else
    the machine-local `local` one."""
    if env.str(variable, default="") or not REDIS_URL:
        return env.cache_url(variable, default=local)
    return {
        # Django's RedisCache, whose clear() deletes only its own keys (not the sessions and
        # the queue beside them).
        "BACKEND": "nukeworks.deployment.redis_cache.PrefixedRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{NUKEWORKS_REDIS_PREFIX}:{purpose}",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
    }


CACHES = {
    "default": _cache("CACHE_URL", "locmemcache://", "cache"),
    "ratelimit": _cache("RATELIMIT_CACHE_URL", f"filecache://{INSTANCE_DIR / 'ratelimit'}", "rl"),
}
if REDIS_URL:
    CACHES["sessions"] = _cache("SESSION_CACHE_URL", "locmemcache://", "session")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Every view of the API binds its database first and names its own authenticators
    # (api.views.base); these are the defaults of the few others.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": [
        "api.throttling.AnonymousRateThrottle",
        "api.throttling.TokenRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="120/min"),
        "token": env.str("API_THROTTLE_TOKEN", default="6000/min"),
        "signin": env.str("API_THROTTLE_SIGNIN", default="20/min"),
    },
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
REST_KNOX = {
    # Tokens expire; a new one is one POST (or `manage.py apitoken`) away.
    "TOKEN_TTL": datetime.timedelta(hours=env.int("API_TOKEN_TTL_HOURS", default=24 * 30)),
    "TOKEN_PREFIX": "nw_",
    "AUTO_REFRESH": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "NukeWorks API",
    "DESCRIPTION": (
        "Every endpoint works on the database its URL names: a catalog label or `current` "
        "(the browser session's). Authenticate with `Authorization: Token <token>` from "
        "POST /api/v1/databases/{db}/auth/token; a token only ever opens its own database."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from local static files (drf-spectacular-sidecar), no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        # Every operation documents its error answers in the one shape (api.errors).
        "api.schema.add_error_responses",
    ],
}

# Logs (nukeworks/deployment/logs.py): every line carries the request id (X-Request-ID);
# "plain" lines by default, one JSON object per line with NUKEWORKS_LOG_FORMAT=json (the
# production profile's default). gunicorn's own lines follow the same option.
NUKEWORKS_LOG_FORMAT = env.str("NUKEWORKS_LOG_FORMAT", default="plain")
LOGGING = logs.logging_config(NUKEWORKS_LOG_FORMAT, env.str("LOG_LEVEL", default="INFO"))
LOGGING_CONFIG = "nukeworks.deployment.logs.configure"

# /readyz (nukeworks/deployment/health.py): the instance folder writable, the databases folder
# readable, a task queue worker alive on this machine (NUKEWORKS_READYZ_WORKER=false on a
# machine that only serves pages), Redis answering when REDIS_URL is set, and the checks named
# here: (name, django-health-check class or dotted path[, kwargs]), e.g. PostgreSQL's
# ("postgresql", "health_check.checks.Database", {"alias": "pg"}).
NUKEWORKS_READYZ_WORKER = env.bool("NUKEWORKS_READYZ_WORKER", default=True)
NUKEWORKS_READYZ_CHECKS: list[tuple] = []

# Operating (README "Operating: slow queries and metrics"): statements slower than
# NUKEWORKS_SLOW_QUERY_MS (0: every one; negative: off) are logged per database and kept for
# the admins' pages (dbselect.engines.slow_queries); Prometheus metrics per database at
# /metrics (metrics/) for admins, NUKEWORKS_METRICS_TOKEN (Bearer) or NUKEWORKS_METRICS_ALLOW.
DBSELECT["SLOW_QUERY_MS"] = env.float("NUKEWORKS_SLOW_QUERY_MS", default=1000.0)
DBSELECT["SLOW_QUERY_KEEP"] = env.int("NUKEWORKS_SLOW_QUERY_KEEP", default=20)
INSTALLED_APPS += ["metrics"]
MIDDLEWARE = ["metrics.middleware.MetricsMiddleware", *MIDDLEWARE]
NUKEWORKS_METRICS = {
    "ENABLED": env.bool("NUKEWORKS_METRICS", default=True),
    "TOKEN": env.str("NUKEWORKS_METRICS_TOKEN", default=""),
    "ALLOW": env.list("NUKEWORKS_METRICS_ALLOW", default=[]),
}
