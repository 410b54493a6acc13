"""Layered settings: which environment is in force, and where every value comes from.

`NUKEWORKS_ENV` names the environment: development (the default), testing or production. A
setting's value is taken from the first of these that has it:

1. the process environment,
2. `.env`,
3. `.env.<environment>` (e.g. `.env.production`),
4. the environment's profile default (`PROFILES` below),
5. the default written in nukeworks/settings.py.

Both files are read from the project folder, or from `NUKEWORKS_ENV_DIR` when the process
environment sets it. The environment itself comes from the process environment, else `.env`,
else `instance/environment` (written by `manage.py env --switch <name>`), else development; an
unknown name stops the process (a typo must never fall back to development's settings).

Settings read every value through a `LayeredEnv` (django-environ's Env over these layers),
which records what each setting got and from where: `manage.py env` prints it. This module
imports nothing of Django's settings, so gunicorn's configuration file uses it too.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

ENVIRONMENTS = ("development", "testing", "production")
DEFAULT_ENVIRONMENT = "development"
PROCESS = "process environment"
DOTENV = ".env"
# instance/environment: the environment chosen with `manage.py env --switch <name>`.
RECORD_FILE = "environment"
NOTSET = environ.Env.NOTSET

# What each environment changes from the defaults in settings.py (variable: default).
# Development is the defaults themselves.
PROFILES: dict[str, dict[str, Any]] = {
    "development": {},
    "testing": {
        # Django's test client calls itself "testserver".
        "ALLOWED_HOSTS": ["testserver", "127.0.0.1", "localhost", "[::1]"],
    },
    "production": {
        # HTTPS only: plain HTTP redirected (not /healthz, /readyz), HSTS, Secure cookies.
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        # One JSON object per log line, for log collectors.
        "NUKEWORKS_LOG_FORMAT": "json",
    },
}

# Read by gunicorn (nukeworks/gunicorn.conf.py) through the same layers; `manage.py env`
# shows them with the rest.
SERVER_DEFAULTS: dict[str, Any] = {
    "NUKEWORKS_BIND": "127.0.0.1:8000",
    "NUKEWORKS_WORKERS": 2,
    "NUKEWORKS_THREADS": 4,
    "NUKEWORKS_TIMEOUT": 60,
    # "-": standard output; a path: that file; empty: no access log.
    "NUKEWORKS_ACCESS_LOG": "-",
    # Addresses whose X-Forwarded-Proto gunicorn trusts (a TLS proxy in front).
    "FORWARDED_ALLOW_IPS": "127.0.0.1,::1",
}

# Variables that are read outside settings (so not "unknown" when a .env file sets them).
READ_ELSEWHERE = frozenset(
    {
        "NUKEWORKS_ENV",
        "NUKEWORKS_ENV_DIR",
        "DJANGO_SETTINGS_MODULE",
        "NUKEWORKS_PROVISIONING_STEP_DELAY",
    }
)


def read_dotenv(path: Path) -> dict[str, str]:
    """Return the variables of a .env file (django-environ's parser); {} when there is none."""

    class _Collector(environ.Env):
        ENVIRON: dict[str, str] = {}

    if not path.is_file():
        return {}
    _Collector.read_env(str(path), overwrite=True)
    return dict(_Collector.ENVIRON)


def read_record(path: Path) -> str | None:
    """Return the environment recorded by `manage.py env --switch`, if any."""
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def validate(name: str, source: str) -> str:
    """Return `name` if it is an environment; raise ImproperlyConfigured naming `source`."""
    if name not in ENVIRONMENTS:
        raise ImproperlyConfigured(
            f"NUKEWORKS_ENV is {name!r} (from {source}): use one of {', '.join(ENVIRONMENTS)}."
        )
    return name


def write_record(instance_dir: Path, name: str) -> Path:
    """Record `name` as this machine's environment (instance/environment, written atomically)."""
    validate(name, "manage.py env --switch")
    instance_dir.mkdir(parents=True, exist_ok=True)
    path = instance_dir / RECORD_FILE
    fd, temporary = tempfile.mkstemp(prefix=f".{RECORD_FILE}-", dir=instance_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


class Layers:
    """The layers one process reads its settings from, highest priority first."""

    def __init__(self, base_dir: Path, process: Mapping[str, str] | None = None) -> None:
        self.process = os.environ if process is None else process
        self.env_dir = Path(self.process.get("NUKEWORKS_ENV_DIR") or base_dir)
        self.dotenv_path = self.env_dir / DOTENV
        self.dotenv = read_dotenv(self.dotenv_path)
        # Where `--switch` records the environment: before the environment is known, so only
        # the process environment and .env can move the instance folder for this purpose.
        instance = self.process.get("NUKEWORKS_INSTANCE_DIR") or self.dotenv.get(
            "NUKEWORKS_INSTANCE_DIR"
        )
        self.instance_dir = Path(instance) if instance else Path(base_dir) / "instance"
        self.record_path = self.instance_dir / RECORD_FILE
        self.name, self.chosen_by = self._choose()
        self.profile = PROFILES[self.name]
        self.profile_path = self.env_dir / f"{DOTENV}.{self.name}"
        self.profile_file = read_dotenv(self.profile_path)
        self.layers: list[tuple[str, Mapping[str, str]]] = [
            (PROCESS, self.process),
            (DOTENV, self.dotenv),
            (self.profile_path.name, self.profile_file),
        ]
        self.mapping = ChainMap(self.process, self.dotenv, self.profile_file)  # type: ignore[arg-type]

    def _choose(self) -> tuple[str, str]:
        for source, mapping in ((PROCESS, self.process), (DOTENV, self.dotenv)):
            value = (mapping.get("NUKEWORKS_ENV") or "").strip()
            if value:
                return validate(value, source), source
        recorded = read_record(self.record_path)
        if recorded:
            source = f"{self.record_path} (manage.py env --switch)"
            return validate(recorded, source), source
        return DEFAULT_ENVIRONMENT, "default"

    def source_of(self, name: str) -> str | None:
        """Return the layer `name` is read from, or None when no layer sets it."""
        for source, mapping in self.layers:
            if name in mapping:
                return source
        return None

    def priority(self) -> list[str]:
        return [source for source, _ in self.layers] + [f"{self.name} profile", "defaults"]


@dataclass
class Read:
    """One variable as settings read it."""

    name: str
    default: Any  # as written in settings.py (NOTSET: required)
    profile_default: Any  # the environment's own default, or NOTSET
    value: Any
    source: str | None  # the layer it came from; None: a default

    @property
    def origin(self) -> str:
        if self.source is not None:
            return self.source
        if self.profile_default is not NOTSET:
            return "profile default"
        return "default"


class LayeredEnv(environ.Env):
    """django-environ's Env over `Layers`, with profile defaults, recording every read."""

    def __init__(self, layers: Layers, **scheme: Any) -> None:
        super().__init__(**scheme)
        self.layers = layers
        self.ENVIRON = layers.mapping
        self.reads: dict[str, Read] = {}

    @property
    def name(self) -> str:
        return self.layers.name

    def get_value(self, var, cast=None, default=NOTSET, parse_default=False):
        base = default
        profile_default = self.layers.profile.get(var, NOTSET)
        if profile_default is not NOTSET and default is not NOTSET:
            default = profile_default
        value = super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        self.reads.setdefault(
            var, Read(var, base, profile_default, value, self.layers.source_of(var))
        )
        return value


def server_settings(env: LayeredEnv) -> dict[str, Any]:
    """Return gunicorn's settings as the layers give them (nukeworks/gunicorn.conf.py)."""
    values: dict[str, Any] = {}
    for name, default in SERVER_DEFAULTS.items():
        if isinstance(default, int):
            values[name] = env.int(name, default=default)
        else:
            values[name] = env.str(name, default=default)
    return values


_current: LayeredEnv | None = None


def load(base_dir: Path) -> LayeredEnv:
    """Return the LayeredEnv of this process's settings (settings.py calls it once)."""
    global _current
    _current = LayeredEnv(Layers(base_dir))
    return _current


def current() -> LayeredEnv:
    """Return the LayeredEnv the settings were read with."""
    if _current is None:
        raise ImproperlyConfigured("the settings were not read through environments.load()")
    return _current


# -- showing values without their secrets

SECRET_NAME = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|PRIVATE|(^|_)KEY$|_KEY_", re.IGNORECASE
)
SECRET_QUERY = re.compile(
    r"([?&;](?:[^=&;]*(?:password|passwd|secret|token|key|auth)[^=&;]*)=)([^&;#\s]*)",
    re.IGNORECASE,
)
URL_WITH_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/@\s]*)@")
MASK = "********"


def as_text(value: Any) -> str:
    """Return a setting's value as an operator would write it in a .env file."""
    if hasattr(value, "geturl"):
        return value.geturl()
    if isinstance(value, list | tuple):
        return ",".join(as_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group(2)
    if ":" in userinfo:
        user, _, _password = userinfo.partition(":")
        return f"{match.group(1)}{user}:{MASK}@"
    # A user part alone is often a token (https://<token>@host).
    return f"{match.group(1)}{MASK}@" if userinfo else match.group(0)


def mask_credentials(text: str) -> str:
    """Mask passwords in URLs (user:password@, ?password=) wherever they appear in `text`."""
    text = URL_WITH_USERINFO.sub(_mask_userinfo, text)
    return SECRET_QUERY.sub(lambda m: m.group(1) + MASK, text)


def shown(name: str, value: Any) -> str:
    """Return `value` of variable `name` as it may be printed: secrets masked."""
    text = as_text(value)
    if SECRET_NAME.search(name):
        return MASK if text else ""
    return mask_credentials(text)


def is_secret(name: str, value: Any) -> bool:
    text = as_text(value)
    return bool(SECRET_NAME.search(name)) or mask_credentials(text) != text


def _same(value: Any, default: Any) -> bool:
    if default is NOTSET:
        return False
    try:
        return as_text(value) == as_text(default)
    except Exception:  # pragma: no cover - an odd type: show it
        return False


def report(env: LayeredEnv) -> dict[str, Any]:
    """What `manage.py env` prints: the environment, and every value not at its default."""
    layers = env.layers
    settings_rows = []
    for read in sorted(env.reads.values(), key=lambda r: r.name):
        if read.origin == "default":
            continue
        origin = read.origin
        if origin == "profile default":
            origin = f"{layers.name} profile default"
        settings_rows.append(
            {
                "name": read.name,
                "value": shown(read.name, read.value),
                "source": origin,
                "default": (
                    "(required)" if read.default is NOTSET else shown(read.name, read.default)
                ),
                "same_as_default": _same(read.value, read.default),
                "masked": is_secret(read.name, read.value),
            }
        )
    unread = {}
    for source, mapping in layers.layers[1:]:
        names = sorted(n for n in mapping if n not in env.reads and n not in READ_ELSEWHERE)
        if names:
            unread[source] = names
    return {
        "environment": layers.name,
        "chosen_by": layers.chosen_by,
        "priority": layers.priority(),
        "files": {
            str(layers.dotenv_path): layers.dotenv_path.is_file(),
            str(layers.profile_path): layers.profile_path.is_file(),
        },
        "record": str(layers.record_path),
        "settings": settings_rows,
        "unread": unread,
    }
