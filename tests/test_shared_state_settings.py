"""What REDIS_URL moves to Redis (settings), and the warning when several servers would keep
their state to themselves (deployment.W001/W002, the balancer marker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import Warning
from django.test import Client

from nukeworks.deployment import balancer, checks
from tests.live import REPO

LOCAL = [
    "sessions",
    "the default cache (API throttles)",
    "sign-in rate limits",
    "the engine dispose feed",
    "the selector's recent paths",
    "the task queue",
]
HINT = (
    "Set REDIS_URL (redis://host:6379/0) on every server, so that sessions, caches, sign-in "
    "rate limits, the engine dispose feed, the recent paths and the task queue live in Redis "
    '(README "Configuration").'
)


def _settings_with(tmp_path: Path, **env: str) -> dict:
    """Import nukeworks.settings in a fresh process with `env`; return what it configured."""
    script = (
        "import json\n"
        "from nukeworks import settings as s\n"
        "print(json.dumps({'SESSION_ENGINE': s.SESSION_ENGINE, "
        "'SESSION_CACHE_ALIAS': getattr(s, 'SESSION_CACHE_ALIAS', None), "
        "'CACHES': s.CACHES, 'HUEY': s.HUEY}, default=str))\n"
    )
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NUKEWORKS_", "SESSION_", "REDIS_", "CACHE_", "RATELIMIT_"))
    }
    clean.update(
        {
            "NUKEWORKS_ENV_DIR": str(tmp_path),
            "NUKEWORKS_INSTANCE_DIR": str(tmp_path / "instance"),
            "SESSION_FILE_PATH": str(tmp_path / "sessions"),
            "SECRET_KEY": "settings-test-secret-key-0123456789-abcdefghijklmnop",
            **env,
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=clean, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_without_redis_url_nothing_changes(tmp_path):
    found = _settings_with(tmp_path)
    assert found["SESSION_ENGINE"] == "django.contrib.sessions.backends.file"
    assert found["CACHES"]["default"]["BACKEND"].endswith("LocMemCache")
    assert found["CACHES"]["ratelimit"]["BACKEND"].endswith("FileBasedCache")
    assert "sessions" not in found["CACHES"]
    assert found["HUEY"]["huey_class"] == "huey.SqliteHuey"


def test_redis_url_moves_sessions_caches_and_queue_to_redis(tmp_path):
    url = "redis://127.0.0.1:6390/2"
    found = _settings_with(tmp_path, REDIS_URL=url, NUKEWORKS_REDIS_PREFIX="site1")
    assert found["SESSION_ENGINE"] == "django.contrib.sessions.backends.cache"
    assert found["SESSION_CACHE_ALIAS"] == "sessions"
    backend = "nukeworks.deployment.redis_cache.PrefixedRedisCache"
    prefixes = {alias: c["KEY_PREFIX"] for alias, c in found["CACHES"].items()}
    assert prefixes == {
        "default": "site1:cache",
        "ratelimit": "site1:rl",
        "sessions": "site1:session",
    }
    assert {c["BACKEND"] for c in found["CACHES"].values()} == {backend}
    assert {c["LOCATION"] for c in found["CACHES"].values()} == {url}
    assert found["HUEY"]["huey_class"] == "huey.RedisHuey"
    assert found["HUEY"]["url"] == url and found["HUEY"]["name"] == "site1"


def test_explicit_variables_win_over_redis_url(tmp_path):
    found = _settings_with(
        tmp_path,
        REDIS_URL="redis://127.0.0.1:6390/2",
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        CACHE_URL="locmemcache://",
        RATELIMIT_CACHE_URL=f"filecache://{tmp_path / 'rl'}",
    )
    assert found["SESSION_ENGINE"] == "django.contrib.sessions.backends.signed_cookies"
    assert found["CACHES"]["default"]["BACKEND"].endswith("LocMemCache")
    assert found["CACHES"]["ratelimit"]["BACKEND"].endswith("FileBasedCache")


# -- the system check and the balancer marker


@pytest.fixture
def instance(settings, tmp_path) -> Path:
    settings.INSTANCE_DIR = tmp_path
    settings.REDIS_URL = ""
    settings.NUKEWORKS_SERVERS = 0
    return tmp_path


def test_one_server_without_a_balancer_is_not_warned_about(instance):
    assert checks.machine_local_state() == LOCAL
    assert checks.check_shared_state() == []


def test_several_servers_without_redis_are_warned_about(instance, settings):
    settings.NUKEWORKS_SERVERS = 2
    assert checks.check_shared_state() == [
        Warning(
            f"NUKEWORKS_SERVERS=2, but these stay on each server: {', '.join(LOCAL)}. A request "
            "that lands on another server loses its session and its database.",
            hint=HINT,
            id="deployment.W001",
        )
    ]


def test_a_request_through_a_balancer_leaves_a_marker_and_a_warning(instance, settings):
    client = Client()
    client.get("/healthz")
    assert not balancer.marker_path().exists()
    assert checks.check_shared_state() == []
    client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    marker = balancer.read_marker()
    assert marker["header"] == "X-Forwarded-For"
    [warning] = checks.check_shared_state()
    assert warning.id == "deployment.W002"
    assert warning.msg == (
        f"Requests came through a load balancer or proxy (X-Forwarded-For, first seen "
        f"{marker['first_seen']}), but these stay on this server: {', '.join(LOCAL)}. If "
        "several app servers share the balancer, a request that lands on another one loses "
        "its session."
    )
    assert warning.hint == (
        f"{HINT} If this is the only app server behind it, set NUKEWORKS_SERVERS=1 (or delete "
        f"{instance / 'balancer-seen'})."
    )
    # The operator says this is the only server; or sets REDIS_URL: no warning.
    settings.NUKEWORKS_SERVERS = 1
    assert checks.check_shared_state() == []
    settings.NUKEWORKS_SERVERS = 0
    settings.REDIS_URL = "redis://127.0.0.1:6390/0"
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    settings.SESSION_CACHE_ALIAS = "sessions"
    redis_cache = {
        "BACKEND": "nukeworks.deployment.redis_cache.PrefixedRedisCache",
        "LOCATION": settings.REDIS_URL,
    }
    settings.CACHES = {"default": redis_cache, "ratelimit": redis_cache, "sessions": redis_cache}
    assert checks.machine_local_state() == []
    assert checks.check_shared_state() == []


def test_redis_url_with_file_sessions_still_names_the_sessions(instance, settings):
    settings.NUKEWORKS_SERVERS = 3
    settings.REDIS_URL = "redis://127.0.0.1:6390/0"
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.file"
    redis_cache = {
        "BACKEND": "nukeworks.deployment.redis_cache.PrefixedRedisCache",
        "LOCATION": settings.REDIS_URL,
    }
    settings.CACHES = {"default": redis_cache, "ratelimit": redis_cache}
    assert checks.machine_local_state() == ["sessions"]
    assert [w.id for w in checks.check_shared_state()] == ["deployment.W001"]


def test_check_deploy_shows_the_warning(tmp_path):
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "balancer-seen").write_text('{"header": "X-Forwarded-For"}')
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NUKEWORKS_", "SESSION_", "REDIS_", "DBSELECT_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
            "NUKEWORKS_ENV_DIR": str(tmp_path),
            "NUKEWORKS_INSTANCE_DIR": str(tmp_path / "instance"),
            "NUKEWORKS_DATABASES_DIR": str(tmp_path / "databases"),
            "SESSION_FILE_PATH": str(tmp_path / "sessions"),
            "DBSELECT_REGISTER_SCANNED": "false",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "deployment.W002" in result.stderr
