"""Access control: allowed roots, browse limits, admin-only actions, CSRF, login rate limiting,
cookie flags and the deploy check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import Warning as CheckWarning
from django.core.checks import run_checks
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from audit.models import AuditEntry
from dbselect import engines, state
from dbselect import session as db_session
from tests.helpers import messages_of, select, sign_in

OUTSIDE = "This location is outside the folders this server allows."


@pytest.fixture
def roots(tmp_path: Path, settings) -> tuple[Path, Path]:
    """Allow only tmp/allowed (and the scanned databases folder); tmp/outside is forbidden."""
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    settings.DBSELECT = {**settings.DBSELECT, "ALLOWED_ROOTS": [str(allowed)]}
    return allowed, outside


# -- allowed roots: selecting --


def test_database_inside_an_allowed_root_is_selected(roots, make_database):
    allowed, _ = roots
    path = make_database(name="Inside", path=allowed / "inside.sqlite")
    client = Client()
    assert select(client, path).status_code == 302
    assert client.session[db_session.SELECTED_PATH] == str(path)


@pytest.mark.parametrize(
    "how",
    ["direct", "dot-dot out of the root", "symlink inside the root", "root name prefix", "choice"],
)
def test_database_outside_the_allowed_roots_is_refused(how, roots, make_database, tmp_path):
    allowed, outside = roots
    home = make_database(name="Home Base", path=allowed / "home.sqlite")
    target = make_database(name="Outside", path=outside / "outside.sqlite")
    raw = {
        "direct": str(target),
        "dot-dot out of the root": f"{allowed}/../outside/outside.sqlite",
        "symlink inside the root": str(allowed / "link.sqlite"),
        "root name prefix": str(tmp_path / "allowed-not-really" / "x.sqlite"),
        "choice": str(target),
    }[how]
    if how == "symlink inside the root":
        (allowed / "link.sqlite").symlink_to(target)
    if how == "root name prefix":
        (tmp_path / "allowed-not-really").mkdir()
        make_database(name="Prefix", path=tmp_path / "allowed-not-really" / "x.sqlite")
    client = Client()
    select(client, home)
    before = sorted(os.listdir(outside))
    field = "choice" if how == "choice" else "path"
    response = client.post("/select-db", {field: raw})
    assert response.status_code == 400
    assert any(m.endswith(f"Reason: {OUTSIDE}") for m in messages_of(response))
    assert client.session[db_session.SELECTED_PATH] == str(home)
    assert sorted(os.listdir(outside)) == before  # not even opened: no -wal/-shm


def test_unrestricted_when_no_roots_are_set(make_database, settings):
    assert settings.DBSELECT["ALLOWED_ROOTS"] == []
    path = make_database(name="Anywhere")
    client = Client()
    assert select(client, path).status_code == 302


def _json_from_python(code: str, env: dict[str, str]) -> object:
    """Run `code` in a fresh interpreter at the project root; return the JSON it prints."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(out.stdout)


def test_allowed_roots_are_read_colon_separated_from_the_environment(tmp_path):
    code = (
        "import django; django.setup()\n"
        "import json; from dbselect.conf import get_config\n"
        "print(json.dumps([str(p) for p in get_config()['ALLOWED_ROOTS']]))\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DBSELECT_ALLOWED_ROOTS": "/srv/nukeworks:/mnt/share/plant data:",
    }
    assert _json_from_python(code, env) == ["/srv/nukeworks", "/mnt/share/plant data"]


# -- allowed roots: browsing --


def test_browse_lists_only_folders_and_databases_inside_the_roots(roots, tmp_path):
    allowed, outside = roots
    (allowed / "site").mkdir()
    (allowed / "plant.sqlite").write_bytes(b"")
    (allowed / "notes.txt").write_text("x")
    (allowed / ".hidden.sqlite").write_bytes(b"")
    os.mkfifo(allowed / "pipe.sqlite")
    (outside / "secret.sqlite").write_bytes(b"")
    (allowed / "escape").symlink_to(outside)  # a folder link leading out
    (allowed / "escape.sqlite").symlink_to(outside / "secret.sqlite")
    (allowed / "passwd.db").symlink_to("/etc/passwd")
    data = Client().get("/select-db/browse", {"dir": str(allowed)}).json()
    assert [(e["name"], e["type"]) for e in data["entries"]] == [
        ("site", "folder"),
        ("plant.sqlite", "database"),
    ]
    assert data["parent"] is None  # the root's parent is outside


@pytest.mark.parametrize(
    "raw",
    ["outside", "dot-dot", "link", "/", "/etc", "/proc/self"],
)
def test_browse_outside_the_roots_is_refused(raw, roots):
    allowed, outside = roots
    (allowed / "link").symlink_to(outside)
    folder = {
        "outside": str(outside),
        "dot-dot": f"{allowed}/../outside",
        "link": str(allowed / "link"),
    }.get(raw, raw)
    response = Client().get("/select-db/browse", {"dir": folder})
    assert response.status_code == 400
    assert response.json() == {"error": OUTSIDE}


def test_browse_default_folder_outside_the_roots_is_refused_not_listed(roots):
    # The default (the scanned databases folder) is not under the only allowed root.
    response = Client().get("/select-db/browse")
    assert response.status_code == 400
    assert response.json() == {"error": OUTSIDE}


def test_deploy_check_warns_only_when_unrestricted(settings, tmp_path):
    expected = CheckWarning(
        "Any file path on this server can be selected and browsed.",
        hint="Set DBSELECT_ALLOWED_ROOTS to the folders that hold NukeWorks databases "
        "(colon-separated).",
        id="dbselect.W001",
    )
    assert expected in run_checks(include_deployment_checks=True)
    assert expected not in run_checks(include_deployment_checks=False)
    settings.DBSELECT = {**settings.DBSELECT, "ALLOWED_ROOTS": [str(tmp_path)]}
    assert [m for m in run_checks(include_deployment_checks=True) if m.id == "dbselect.W001"] == []


# -- admin-only actions --

ADMIN_ONLY_POSTS = [
    "/select-db/migrate",
    "/admin/engines/dispose",
    "/admin/engines/dispose-idle",
    "/snapshots/create",
    "/snapshots/prune",
    "/snapshots/retention",
    "/snapshots/x.sqlite/restore",
    "/snapshots/x.sqlite/delete",
]


@pytest.fixture
def plant(make_database) -> Path:
    return make_database(
        name="Plant", companies=["Co"], users=[("boss", "pw", True), ("worker", "pw", False)]
    )


def _file_state(path: Path) -> tuple[int, list[str]]:
    return path.stat().st_size, sorted(os.listdir(path.parent))


@pytest.mark.parametrize("url", ADMIN_ONLY_POSTS)
@pytest.mark.parametrize("who", ["anonymous with a database", "non-admin"])
def test_admin_only_actions_are_forbidden(url, who, plant):
    client = Client()
    select(client, plant)
    if who == "non-admin":
        sign_in(client, "worker", "pw")
    before = _file_state(plant)
    response = client.post(url, {"path": str(plant), "name": "x.sqlite"})
    assert response.status_code == 403
    assert "Traceback" not in response.content.decode()
    assert _file_state(plant) == before
    assert client.session[db_session.SELECTED_PATH] == str(plant)


@pytest.mark.parametrize("url", ADMIN_ONLY_POSTS)
def test_admin_only_actions_need_a_database_first(url):
    response = Client().post(url, {"name": "x.sqlite"})
    assert response.status_code in (302, 403)
    if response.status_code == 302:
        assert response["Location"].startswith("/select-db")


def test_admin_status_comes_from_the_current_database(make_database):
    """An admin of file A is nobody in file B where the same name is a plain user."""
    a = make_database(name="A", users=[("sam", "pw", True)])
    b = make_database(name="B", users=[("sam", "pw", False)])
    client = Client()
    select(client, a)
    sign_in(client, "sam", "pw")
    assert client.get("/admin/").status_code == 200
    select(client, b)
    assert client.post("/admin/engines/dispose", {"path": str(a)}).status_code == 403
    assert client.get("/admin/").status_code == 302  # Django admin: to its login


# -- CSRF --


def _concrete_urls() -> list[tuple[str, object]]:
    """Every URL pattern of the project with its view (parameters filled with samples)."""
    found: list[tuple[str, object]] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                found.append((prefix + str(pattern.pattern), pattern.callback))

    walk(get_resolver().url_patterns, "")
    return found


def _read_only(view: object) -> bool:
    """Return True for a class-based view that handles no unsafe method."""
    cls = getattr(view, "cls", None)
    return cls is not None and not any(
        hasattr(cls, method) for method in ("post", "put", "patch", "delete")
    )


def test_no_project_view_is_csrf_exempt():
    exempt = [
        route
        for route, view in _concrete_urls()
        if getattr(view, "csrf_exempt", False)
        # DRF's APIView is exempt from Django's check and enforces CSRF itself for sessions;
        # a view that changes nothing (the API catalog, its schema and docs) needs none.
        and not getattr(getattr(view, "cls", None), "authentication_classes", None)
        and not _read_only(view)
    ]
    assert exempt == []


@pytest.mark.parametrize(
    "url, data",
    [
        ("/select-db", {"path": "/tmp/x.sqlite"}),
        ("/login/", {"username": "boss", "password": "pw"}),
        ("/logout/", {}),
        ("/companies/new/", {"name": "Sneaky", "country": "X"}),
        ("/select-db/migrate", {"path": "/tmp/x"}),
        ("/admin/engines/dispose", {"path": "/tmp/x"}),
        ("/snapshots/create", {}),
    ],
)
def test_posts_without_a_csrf_token_are_refused(url, data, plant):
    client = Client(enforce_csrf_checks=True)
    # Selecting needs a token too: take it from the selector form.
    client.get("/select-db")
    token = client.cookies["csrftoken"].value
    select(client, plant, csrfmiddlewaretoken=token)
    sign_in_response = client.post(
        "/login/", {"username": "boss", "password": "pw", "csrfmiddlewaretoken": token}
    )
    assert sign_in_response.status_code == 302
    response = client.post(url, data)
    assert response.status_code == 403
    assert "CSRF" in response.content.decode()
    conn_names = _company_names(plant)
    assert "Sneaky" not in conn_names


def _company_names(path: Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM companies_company")]
    finally:
        conn.close()


# -- login rate limiting --


@pytest.fixture
def limited(settings, tmp_path) -> None:
    """A private cache and small limits: 3 failures per username, 5 per address."""
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"ratelimit-{tmp_path}",
        },
    }
    settings.LOGIN_RATE_LIMIT = {"USERNAME_LIMIT": 3, "IP_LIMIT": 5, "WINDOW": 600}


def _attempt(client: Client, username: str, password: str, addr: str = "10.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=addr)


BLOCKED = (
    "Too many failed sign-in attempts for this account or from your address. "
    "Try again in 10 minutes."
)


def _form_errors(response) -> str:
    return " ".join(response.context["form"].non_field_errors())


def test_username_is_locked_after_repeated_failures(limited, plant):
    client = Client()
    select(client, plant)
    for _ in range(3):
        assert _attempt(client, "boss", "wrong").status_code == 200
    blocked = _attempt(client, "boss", "pw")  # the right password, too late
    assert blocked.status_code == 429
    assert _form_errors(blocked) == BLOCKED
    assert "_auth_user_id" not in client.session
    # Case and spaces do not make another username; another address does not help either.
    assert _attempt(client, "  BOSS ", "pw", addr="10.9.9.9").status_code == 429
    # Another user from the same address is still let in.
    assert _attempt(client, "worker", "pw").status_code == 302


def test_switching_database_files_does_not_reset_the_limit(limited, plant, make_database):
    other = make_database(name="Other", users=[("boss", "pw", True)])
    client = Client()
    select(client, plant)
    for _ in range(3):
        _attempt(client, "boss", "wrong")
    select(client, other)
    assert _attempt(client, "boss", "pw").status_code == 429
    fresh = Client()  # a new session (cookie thrown away) does not help either
    select(fresh, other)
    assert _attempt(fresh, "boss", "pw").status_code == 429


def test_address_is_locked_after_failures_on_many_usernames(limited, plant):
    client = Client()
    select(client, plant)
    for i in range(5):
        _attempt(client, f"guess{i}", "wrong", addr="10.0.0.7")
    assert _attempt(client, "worker", "pw", addr="10.0.0.7").status_code == 429
    assert _attempt(client, "worker", "pw", addr="10.0.0.8").status_code == 302


def test_success_clears_the_username_counter(limited, plant):
    client = Client()
    select(client, plant)
    for _ in range(2):
        _attempt(client, "worker", "wrong", addr="10.0.1.1")
    assert _attempt(client, "worker", "pw", addr="10.0.1.1").status_code == 302
    client.post("/logout/")
    select(client, plant)
    for _ in range(2):
        _attempt(client, "worker", "wrong", addr="10.0.1.2")
    assert _attempt(client, "worker", "pw", addr="10.0.1.2").status_code == 302


def test_blocked_attempt_is_audited(limited, plant):
    client = Client()
    select(client, plant)
    for _ in range(4):
        _attempt(client, "boss", "wrong")
    engine = engines.get(str(plant))
    with state.override(engine.alias):
        actions = list(AuditEntry.objects.values_list("action", "outcome", "username"))
    assert actions.count(("auth.login_failed", "failure", "boss")) == 3
    assert ("auth.login_blocked", "denied", "boss") in actions


def test_counters_never_live_in_a_database_file(limited, plant):
    """Nothing the limiter keeps is written to the selected file (a user could swap it)."""
    import sqlite3

    client = Client()
    select(client, plant)
    for _ in range(4):
        _attempt(client, "boss", "wrong")
    conn = sqlite3.connect(f"file:{plant}?mode=ro", uri=True)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert not any("attempt" in t or "ratelimit" in t or "axes" in t for t in tables)


# -- cookies --


def test_session_and_csrf_cookies_flags(plant):
    client = Client()
    client.get("/select-db")
    select(client, plant)
    response = sign_in(client, "worker", "pw")
    session_cookie = response.cookies["sessionid"]
    assert session_cookie["httponly"] is True
    assert session_cookie["samesite"] == "Lax"
    assert not session_cookie["secure"]  # NUKEWORKS_ENV=testing: served over plain HTTP
    csrf_cookie = client.cookies["csrftoken"]
    assert csrf_cookie["samesite"] == "Lax"


def test_production_cookies_are_secure():
    code = (
        "from django.conf import settings as s; import django; django.setup()\n"
        "import json\n"
        "print(json.dumps([s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SESSION_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SAMESITE]))\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
        "NUKEWORKS_ENV": "production",
    }
    assert _json_from_python(code, env) == [True, True, True, "Lax", "Lax"]


# -- audit log --


def _audit_rows(path: Path) -> list[tuple[str, str, str]]:
    engine = engines.register(str(path))
    with state.override(engine.alias):
        return list(AuditEntry.objects.order_by("id").values_list("action", "outcome", "username"))


def _audit_lines(caplog) -> list[dict]:
    return [
        json.loads(r.getMessage().removeprefix("audit "))
        for r in caplog.records
        if r.name == "nukeworks.audit"
    ]


def test_selection_login_and_logout_are_audited_and_logged(plant, tmp_path, caplog):
    caplog.set_level("INFO", logger="nukeworks.audit")
    client = Client()
    select(client, plant)
    sign_in(client, "worker", "wrong")
    sign_in(client, "worker", "pw")
    select(client, tmp_path / "missing.sqlite")  # refused while on Plant
    client.post("/logout/")
    rows = _audit_rows(plant)
    assert ("database.select", "success", "") in rows
    assert ("auth.login_failed", "failure", "worker") in rows
    assert ("auth.login", "success", "worker") in rows
    assert ("database.select", "failure", "worker") in rows
    assert ("auth.logout", "success", "worker") in rows
    lines = _audit_lines(caplog)
    refused = next(
        line
        for line in lines
        if line["outcome"] == "failure" and line["action"] == "database.select"
    )
    assert refused["detail"] == "No file exists at this path."
    assert refused["target"] == str(tmp_path / "missing.sqlite")
    assert set(refused) == {
        "action",
        "outcome",
        "user",
        "target",
        "detail",
        "remote_addr",
        "database",
    }


def test_fallback_is_audited_in_the_database_returned_to(make_database):
    from django.db import connections

    client = Client()
    safe = make_database(name="Safe", users=[("op", "pw", False)])
    fragile = make_database(name="Fragile", users=[("op", "pw", False)])
    select(client, safe)
    select(client, fragile)
    sign_in(client, "op", "pw")
    connections.close_all()
    for suffix in ("", "-wal", "-shm"):
        Path(str(fragile) + suffix).unlink(missing_ok=True)
    client.get("/companies/")
    rows = _audit_rows(safe)
    assert ("database.fallback", "failure", "op") in rows


def test_privileged_actions_are_audited(make_database, old_database):
    """Migration, snapshot create/restore and engine dispose each leave an entry."""
    plant = make_database(name="Plant", users=[("boss", "pw", True)], label="default")
    client = Client()
    select(client, plant)
    sign_in(client, "boss", "pw")
    assert client.post("/snapshots/create", {"note": "before work"}).status_code == 302
    client.post("/admin/engines/dispose", {"path": str(plant)})
    actions = {row[0] for row in _audit_rows(plant)}
    assert {"snapshot.create", "engine.dispose"} <= actions
    from snapshots import service

    [snapshot] = service.list_snapshots(str(plant))
    client.post(f"/snapshots/{snapshot.name}/restore", {"confirm": "1"})
    assert "snapshot.restore" in {row[0] for row in _audit_rows(plant)}
    client.post("/select-db/migrate", {"path": str(old_database)})
    assert ("database.migrate", "success", "boss") in _audit_rows(old_database)


def test_audit_entries_are_visible_to_admins_only(plant):
    admin = Client()
    select(admin, plant)
    sign_in(admin, "boss", "pw")
    page = admin.get("/admin/audit/auditentry/")
    assert page.status_code == 200
    assert "auth.login" in page.content.decode()
    assert admin.get("/admin/audit/auditentry/add/").status_code == 403
    worker = Client()
    select(worker, plant)
    sign_in(worker, "worker", "pw")
    assert worker.get("/admin/audit/auditentry/")["Location"].startswith("/admin/login/")


def test_an_anonymous_migrate_without_a_database_writes_to_no_database(old_database):
    """Refused, and the refusal is not audited into the project's `default` file."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connections["default"]) as queries:
        response = Client().post("/select-db/migrate", {"path": str(old_database)})
    assert response.status_code == 403
    assert [q["sql"] for q in queries.captured_queries] == []
