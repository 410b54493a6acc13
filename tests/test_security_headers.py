"""Security headers: a strict Content-Security-Policy everywhere, and a clean `check --deploy`."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.test import Client

from dbselect.engines import workers as engine_store
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.helpers import select, sign_in
from tests.live import GunicornServer

REPO = Path(__file__).resolve().parent.parent
# Script types a browser executes; anything else (application/json, …) is inert data.
EXECUTABLE_SCRIPT_TYPES = {"", "text/javascript", "application/javascript", "module"}


class _InlineCode(HTMLParser):
    """Collects inline event handlers and inline scripts with a body from a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.handlers: list[str] = []
        self.inline_scripts: list[str] = []
        self._script: dict[str, str | None] | None = None
        self._body: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [f"<{tag} {name}=…>" for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self._script, self._body = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._body.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            kind = (self._script.get("type") or "").strip().lower()
            body = "".join(self._body).strip()
            if "src" not in self._script and body and kind in EXECUTABLE_SCRIPT_TYPES:
                self.inline_scripts.append(body[:200])
            self._script = None


def _inline_code(html: str) -> tuple[list[str], list[str]]:
    parser = _InlineCode()
    parser.feed(html)
    parser.close()
    return parser.handlers, parser.inline_scripts


def _assert_strict_csp(response, url: str) -> None:
    policy = response.get("Content-Security-Policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives.get("default-src") == ["'none'"], (url, policy)
    assert directives.get("script-src") == ["'self'"], (url, policy)
    assert directives.get("style-src") == ["'self'"], (url, policy)
    assert directives.get("frame-ancestors") == ["'none'"], (url, policy)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, (url, policy)


@pytest.fixture(autouse=True)
def _own_engine_store(tmp_path, settings):
    """The engines page publishes into a store of this test's own."""
    settings.DBSELECT = {
        **settings.DBSELECT,
        "ENGINE_STORE_DIR": tmp_path / "engines",
        "ENGINE_REFRESH_WAIT": 0,
    }
    yield
    engine_store.reset_store()


def test_every_page_has_a_strict_csp_and_no_inline_code(make_database):
    # databases/default: its admins are operators, so the engines page is reachable too.
    path = make_database(
        name="Plant", companies=["Acme"], users=[("boss", "pw-boss-123", True)], label="default"
    )
    seen: dict[str, str] = {}

    def visit(client: Client, url: str, status: int = 200, label: str = "") -> None:
        response = client.get(url)
        assert response.status_code == status, url
        _assert_strict_csp(response, url)
        seen[url + label] = response.content.decode()

    anonymous = Client()
    visit(anonymous, "/select-db")
    visit(anonymous, "/companies/", 302, label=" (no database)")
    client = Client()
    select(client, path)
    visit(client, "/login/")
    visit(client, "/admin/login/")

    assert sign_in(client, "boss", "pw-boss-123").status_code == 302
    signed_in = {
        "/": 200,
        "/companies/": 200,
        "/companies/new/": 200,
        "/snapshots/": 200,
        "/database/protection": 200,
        "/admin/engines/": 200,
        "/admin/": 200,
        "/admin/password_change/": 200,
        "/select-db": 200,
        "/no/such/page/": 404,
    }
    for url, status in signed_in.items():
        visit(client, url, status, label=" (signed in)")

    for url, html in seen.items():
        handlers, scripts = _inline_code(html)
        assert handlers == [], url
        assert scripts == [], url
    # The selector's browse widget still works: its script is a static file.
    assert 'src="/static/dbselect/browse.js"' in seen["/select-db"]


def test_csp_also_on_json_redirects_and_static_files(tmp_path):
    client = Client()
    for url in ("/select-db/browse?dir=" + str(tmp_path), "/companies/", "/healthz"):
        _assert_strict_csp(client.get(url), url)
    static = client.get("/static/dbselect/browse.js")
    assert static.status_code == 200
    _assert_strict_csp(static, "/static/dbselect/browse.js")


@pytest.fixture
def harbour_server(tmp_path: Path, make_database) -> Iterator[str]:
    """gunicorn (test settings, so the fixtures' fast password hashes work) with one database."""
    make_database(
        name="Harbour Plant",
        companies=["Tidal Works"],
        users=[("ops", "pw-ops-123", True)],
        label="harbour",
    )
    server = GunicornServer(
        tmp_path, workers=1, settings_module="tests.settings", env={"NUKEWORKS_LIVE_SERVER": "1"}
    ).start()
    yield server.base
    server.stop()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_the_browser_reports_no_csp_violation(harbour_server):
    """Chromium enforces the policy: the pages, the browse widget and the admin still work."""
    from playwright.sync_api import sync_playwright

    base = harbour_server
    console: list[str] = []
    errors: list[str] = []
    failed: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.on("console", lambda message: console.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "response",
                lambda r: failed.append(r.url) if r.status >= 400 else None,
            )
            page.goto(base + "/select-db")
            page.click("#browse-toggle")  # fetch() to /select-db/browse: connect-src 'self'
            page.get_by_role("button", name="harbour/").click()
            page.get_by_role("button", name="nukeworks.sqlite").click()
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url("**/login/**")
            page.fill("#id_username", "ops")
            page.fill("#id_password", "pw-ops-123")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(base + "/")
            for url in ("/companies/", "/snapshots/", "/admin/", "/admin/password_change/"):
                assert page.goto(base + url).status == 200, url
        finally:
            browser.close()
    violations = [m for m in console if "Content Security Policy" in m or "Refused to" in m]
    assert violations == []
    assert errors == []
    # Every script and stylesheet loaded (the browser's own favicon request may 404).
    assert [u for u in failed if not u.endswith("/favicon.ico")] == []


def test_no_template_has_inline_code():
    """Every template of the project, whatever page renders it."""
    for template in sorted((REPO / "templates").rglob("*.html")):
        handlers, scripts = _inline_code(template.read_text(encoding="utf-8"))
        assert handlers == [], template
        assert scripts == [], template


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a production server: what an operator must set, in tmp folders."""
    roots = tmp_path / "srv"
    roots.mkdir(exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NUKEWORKS_", "DBSELECT_", "SECURE_", "SESSION_"))
        and key not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
            "NUKEWORKS_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": "nukeworks.example.com",
            "DBSELECT_ALLOWED_ROOTS": str(roots),
            "NUKEWORKS_INSTANCE_DIR": str(tmp_path / "instance"),
            "NUKEWORKS_DATABASES_DIR": str(tmp_path / "databases"),
            "NUKEWORKS_DEFAULT_DB": str(tmp_path / "databases" / "default.sqlite"),
            "SESSION_FILE_PATH": str(tmp_path / "sessions"),
            "DBSELECT_REGISTER_SCANNED": "false",
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


def test_check_deploy_is_clean_in_production(tmp_path):
    result = _manage(_production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in output
    assert "WARNING" not in output and "ERROR" not in output


def test_production_turns_on_https_settings(tmp_path):
    code = (
        "import django, json; django.setup()\n"
        "from django.conf import settings as s\n"
        "print(json.dumps([s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT,"
        " s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD]))\n"
    )
    env = _production_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[true, true, true, 31536000, true, true]"
    env["NUKEWORKS_ENV"] = "development"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[false, false, false, 0, false, false]"
