"""Environments: layered settings, `manage.py env`, `--switch`, and production's refusals.

Every test runs `manage.py` as its own process on the project's settings, with the .env files
in a temporary folder (NUKEWORKS_ENV_DIR) and a temporary instance folder, as an operator would.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from nukeworks.deployment import environments

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cret-" + secrets.token_urlsafe(48)
REDIS_PASSWORD = "hunter2-" + secrets.token_hex(8)


def _clean_environment(root: Path, **extra: str) -> dict[str, str]:
    """The process environment of an operator's shell: no NukeWorks variable but the folders."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NUKEWORKS_", "DBSELECT_", "SECURE_", "SESSION_", "CSRF_"))
        and key not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "REDIS_URL", "LOG_LEVEL"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
            "NUKEWORKS_ENV_DIR": str(root),
            "NUKEWORKS_INSTANCE_DIR": str(root / "instance"),
            "NUKEWORKS_DATABASES_DIR": str(root / "databases"),
            "NUKEWORKS_DEFAULT_DB": str(root / "databases" / "default.sqlite"),
            "SESSION_FILE_PATH": str(root / "sessions"),
            **extra,
        }
    )
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _report(env: dict[str, str]) -> dict:
    result = _manage(env, "env", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _rows(report: dict) -> dict[str, dict]:
    return {row["name"]: row for row in report["settings"]}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "srv").mkdir()
    return tmp_path


def _safe_production(root: Path) -> str:
    """A .env.production an operator would write: every value production requires."""
    return (
        f"SECRET_KEY={SECRET}\n"
        "ALLOWED_HOSTS=nukeworks.example.com\n"
        f"DBSELECT_ALLOWED_ROOTS={root / 'srv'}\n"
        "DBSELECT_BUSY_TIMEOUT=7.5\n"
    )


def test_env_shows_the_source_of_a_setting_set_in_env_production(root):
    (root / ".env.production").write_text(_safe_production(root))
    report = _report(_clean_environment(root, NUKEWORKS_ENV="production"))
    assert report["environment"] == "production"
    assert report["chosen_by"] == environments.PROCESS
    rows = _rows(report)
    assert rows["DBSELECT_BUSY_TIMEOUT"]["source"] == ".env.production"
    assert rows["DBSELECT_BUSY_TIMEOUT"]["value"] == "7.5"
    assert rows["DBSELECT_BUSY_TIMEOUT"]["default"] == "5.0"
    # The production profile's own defaults are named as such.
    assert rows["SECURE_HSTS_SECONDS"] == {
        "name": "SECURE_HSTS_SECONDS",
        "value": "31536000",
        "source": "production profile default",
        "default": "0",
        "same_as_default": False,
        "masked": False,
    }
    assert rows["NUKEWORKS_LOG_FORMAT"]["source"] == "production profile default"
    # The folder the test set in the process environment.
    assert rows["NUKEWORKS_INSTANCE_DIR"]["source"] == environments.PROCESS
    # Settings at their default are not listed.
    assert "DBSELECT_SYNCHRONOUS" not in rows

    text = _manage(_clean_environment(root, NUKEWORKS_ENV="production"), "env").stdout
    line = next(line for line in text.splitlines() if "DBSELECT_BUSY_TIMEOUT" in line)
    assert "7.5" in line and "[.env.production]" in line
    assert "Priority: process environment > .env > .env.production > production profile" in text


def test_priority_process_environment_then_env_then_env_production(root):
    (root / ".env").write_text("NUKEWORKS_ENV=production\nDBSELECT_STAT_TIMEOUT=4\n")
    (root / ".env.production").write_text(
        _safe_production(root) + "DBSELECT_STAT_TIMEOUT=6\nDBSELECT_QUERY_TIME_LIMIT=20\n"
    )
    env = _clean_environment(root, DBSELECT_BUSY_TIMEOUT="2.5")
    report = _report(env)
    assert (report["environment"], report["chosen_by"]) == ("production", ".env")
    rows = _rows(report)
    # process environment > .env.production
    assert (rows["DBSELECT_BUSY_TIMEOUT"]["value"], rows["DBSELECT_BUSY_TIMEOUT"]["source"]) == (
        "2.5",
        environments.PROCESS,
    )
    # .env > .env.production
    assert (rows["DBSELECT_STAT_TIMEOUT"]["value"], rows["DBSELECT_STAT_TIMEOUT"]["source"]) == (
        "4.0",
        ".env",
    )
    # .env.production > defaults
    assert rows["DBSELECT_QUERY_TIME_LIMIT"]["source"] == ".env.production"
    # A value set by a file also beats the profile's default.
    (root / ".env").write_text("NUKEWORKS_ENV=production\nSECURE_HSTS_SECONDS=600\n")
    assert _rows(_report(env))["SECURE_HSTS_SECONDS"] == {
        "name": "SECURE_HSTS_SECONDS",
        "value": "600",
        "source": ".env",
        "default": "0",
        "same_as_default": False,
        "masked": False,
    }


def test_settings_really_take_the_layered_values(root):
    (root / ".env").write_text("NUKEWORKS_ENV=production\n")
    (root / ".env.production").write_text(_safe_production(root))
    code = (
        "import django, json; django.setup()\n"
        "from django.conf import settings as s\n"
        "print(json.dumps([s.NUKEWORKS_ENV, s.DBSELECT['BUSY_TIMEOUT'], s.SECURE_SSL_REDIRECT,"
        f" s.SESSION_COOKIE_SECURE, s.ALLOWED_HOSTS, s.SECRET_KEY == {SECRET!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=_clean_environment(root),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout.splitlines()[-1]) == [
        "production",
        7.5,
        True,
        True,
        ["nukeworks.example.com"],
        True,
    ]


def test_env_never_prints_secrets(root):
    (root / ".env.production").write_text(
        _safe_production(root)
        + f"REDIS_URL=redis://nukeworks:{REDIS_PASSWORD}@redis.example:6379/0\n"
        + f"CACHE_URL=rediscache://cache.example:6379/1?password={REDIS_PASSWORD}\n"
    )
    env = _clean_environment(root, NUKEWORKS_ENV="production", API_THROTTLE_TOKEN="100/min")
    for args in (("env",), ("env", "--json")):
        result = _manage(env, *args)
        assert result.returncode == 0, result.stderr
        output = result.stdout + result.stderr
        assert SECRET not in output
        assert REDIS_PASSWORD not in output
    rows = _rows(_report(env))
    assert rows["SECRET_KEY"]["value"] == "********"
    assert rows["SECRET_KEY"]["masked"] is True
    assert rows["REDIS_URL"]["value"] == "redis://nukeworks:********@redis.example:6379/0"
    assert rows["CACHE_URL"]["value"] == "rediscache://cache.example:6379/1?password=********"
    # A "token" in a name that holds no secret value is masked too (names are not trusted).
    assert rows["API_THROTTLE_TOKEN"]["value"] == "********"


def test_masking_rules():
    assert environments.shown("SECRET_KEY", "abc") == "********"
    assert environments.shown("SECRET_KEY", "") == ""
    assert environments.shown("MY_PASSWORD", "x") == "********"
    assert environments.shown("SOME_URL", "https://tok123@git.example/x") == (
        "https://********@git.example/x"
    )
    assert environments.shown("SOME_URL", "postgres://u:p%40ss@db:5432/n") == (
        "postgres://u:********@db:5432/n"
    )
    assert environments.shown("SOME_URL", "redis://host:6379/0") == "redis://host:6379/0"
    assert environments.shown("ALLOWED_HOSTS", ["a", "b"]) == "a,b"


def test_a_generated_secret_key_is_said_so(root):
    report = _report(_clean_environment(root))
    assert (report["environment"], report["chosen_by"]) == ("development", "default")
    assert report["secret_key"] == "generated (instance/secret_key)"


def test_variables_nobody_reads_are_pointed_out(root):
    (root / ".env.production").write_text(_safe_production(root) + "DBSELECT_BUSY_TIMOUT=3\n")
    report = _report(_clean_environment(root, NUKEWORKS_ENV="production"))
    assert report["unread"] == {".env.production": ["DBSELECT_BUSY_TIMOUT"]}


def test_switch_persists_for_later_commands(root):
    env = _clean_environment(root)
    assert _report(env)["environment"] == "development"

    result = _manage(env, "env", "--switch", "testing")
    assert result.returncode == 0, result.stderr
    record = root / "instance" / "environment"
    assert record.read_text() == "testing\n"
    report = _report(env)
    assert report["environment"] == "testing"
    assert report["chosen_by"] == f"{record} (manage.py env --switch)"
    # The testing profile's own defaults now apply.
    assert _rows(report)["ALLOWED_HOSTS"]["source"] == "testing profile default"

    # NUKEWORKS_ENV in the process environment (or .env) still wins over the record, and
    # --switch says so.
    assert _report({**env, "NUKEWORKS_ENV": "development"})["environment"] == "development"
    (root / ".env").write_text("NUKEWORKS_ENV=development\n")
    result = _manage(env, "env", "--switch", "production")
    assert result.returncode == 0, result.stderr
    assert record.read_text() == "production\n"
    assert "NUKEWORKS_ENV=development is set in the .env" in result.stdout
    assert _report(env)["environment"] == "development"
    (root / ".env").unlink()
    assert _report(env)["environment"] == "production"


def test_switch_refuses_an_unknown_name(root):
    env = _clean_environment(root)
    _manage(env, "env", "--switch", "testing")
    result = _manage(env, "env", "--switch", "prod")
    assert result.returncode != 0
    assert "Unknown environment 'prod'" in result.stderr
    assert "development, testing, production" in result.stderr
    # The recorded environment is unchanged.
    assert (root / "instance" / "environment").read_text() == "testing\n"


def test_an_unknown_environment_stops_every_command(root):
    result = _manage(_clean_environment(root, NUKEWORKS_ENV="prod"), "check")
    assert result.returncode != 0
    assert "NUKEWORKS_ENV is 'prod' (from process environment)" in result.stderr
    # Also when the recorded choice was edited by hand.
    (root / "instance").mkdir()
    (root / "instance" / "environment").write_text("staging\n")
    result = _manage(_clean_environment(root), "env")
    assert result.returncode != 0
    assert "NUKEWORKS_ENV is 'staging'" in result.stderr


# -- production refuses unsafe settings


def test_production_with_safe_values_passes_check_deploy(root):
    (root / ".env.production").write_text(_safe_production(root))
    env = _clean_environment(root, NUKEWORKS_ENV="production")
    result = _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in output


@pytest.mark.parametrize(
    ("unsafe", "check_id"),
    [
        ("DEBUG=true\n", "deployment.E001"),
        ("SECRET_KEY=\n", "deployment.E002"),
        ("DBSELECT_ALLOWED_ROOTS=\n", "dbselect.E003"),
    ],
)
def test_production_with_unsafe_settings_fails_the_checks(root, unsafe, check_id):
    (root / ".env").write_text(unsafe)  # .env beats .env.production
    (root / ".env.production").write_text(_safe_production(root))
    env = _clean_environment(root, NUKEWORKS_ENV="production")
    for args in (("check", "--deploy"), ("check",), ("migrate", "--check")):
        result = _manage(env, *args)
        assert result.returncode != 0, (args, result.stdout)
        assert check_id in result.stderr, (args, result.stderr)
    # The same values outside production are no error.
    env["NUKEWORKS_ENV"] = "development"
    assert _manage(env, "check").returncode == 0


def test_unrestricted_paths_need_an_explicit_opt_out_in_production(root):
    (root / ".env.production").write_text(
        _safe_production(root).replace(f"DBSELECT_ALLOWED_ROOTS={root / 'srv'}\n", "")
        + "DBSELECT_ALLOW_UNRESTRICTED_PATHS=true\n"
    )
    env = _clean_environment(root, NUKEWORKS_ENV="production")
    result = _manage(env, "check", "--deploy")
    assert result.returncode == 0, result.stderr
    # Still said, as a warning.
    assert "dbselect.W001" in result.stderr


def test_gunicorn_refuses_to_serve_production_with_debug_on(root):
    (root / ".env").write_text("DEBUG=true\n")
    (root / ".env.production").write_text(_safe_production(root))
    for name in ("instance", "databases", "sessions"):
        (root / name).mkdir(exist_ok=True)
    env = _clean_environment(
        root,
        NUKEWORKS_ENV="production",
        NUKEWORKS_BIND="127.0.0.1:0",
        NUKEWORKS_WORKERS="1",
        NUKEWORKS_LOG_FORMAT="plain",
    )
    gunicorn = Path(sys.executable).with_name("gunicorn")
    result = subprocess.run(
        [str(gunicorn), "-c", "nukeworks/gunicorn.conf.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "deployment.E001" in output
    assert "refuses to start in production" in output
