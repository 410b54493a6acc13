"""Snapshots and restores of PostgreSQL databases of the catalog (a real PostgreSQL server).

A snapshot is a pg_dump archive (`.pgdump`) with the same sidecar as a file's; a restore
restores it into a fresh database and swaps it in for milliseconds, the replaced database
dumped as the safety snapshot. Through the pages, `manage.py snapshot` and the API, with the
same permissions and audit entries as for files, and no password anywhere. While one app
server restores, writers on it and on a second app server (a real gunicorn) lose nothing they
were told was saved.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import close_old_connections, connections
from django.test import Client

from audit.models import AuditEntry
from dbselect import catalog, engines, recovery, state
from dbselect.catalog import store
from snapshots import pg, service
from tests.helpers import add_rows, messages_of, select, sign_in
from tests.live import Browser, GunicornServer
from tests.services import database_names

ADMIN = ("kim", "pw-kim-12345", True)
CLERK = ("clerk", "pw-clerk-12345", False)
# Signs in on the gunicorn server (production hashers; see _pbkdf2).
REMOTE = ("remote", "pw-remote-12345", False)
COMPANY_URL = re.compile(r"/companies/(\d+)/$")


def _url(target: str):
    entry = catalog.entry_for_target(target)
    assert entry is not None
    return entry.url


def _companies(target: str, dbname: str | None = None) -> list[str]:
    url = _url(target)
    if dbname is not None:
        url = url.with_dbname(dbname)
    with psycopg.connect(**url.libpq_params()) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM companies_company ORDER BY id")]


def _work_databases(target: str) -> list[str]:
    return database_names(_url(target), _url(target).dbname + "__%")


def _snapshot_companies(target: str, snapshot: service.Snapshot) -> list[str]:
    """The companies a snapshot holds: restored into a scratch database, read, dropped."""
    url = _url(target)
    scratch = pg.work_name(url.dbname, "check")
    fd = os.open(snapshot.path, os.O_RDONLY)
    try:
        pg.restore_new(url, scratch, fd)
    finally:
        os.close(fd)
    try:
        return _companies(target, scratch)
    finally:
        pg.drop_quietly(url, scratch)


def _audit(target: str) -> list[AuditEntry]:
    alias = engines.register(target).alias
    with state.override(alias):
        rows = list(AuditEntry.objects.order_by("id"))
    connections[alias].close()
    return rows


def _signed_in(target: str, user=ADMIN) -> Client:
    client = Client()
    assert select(client, target).status_code == 302
    assert sign_in(client, user[0], user[1]).status_code == 302
    return client


@pytest.fixture
def plant(make_pg_database):
    target = make_pg_database(
        "plantpg",
        name="Plant PG",
        users=[ADMIN, CLERK, REMOTE],
        companies=["Acme", "Globex", "Initech"],
    )
    yield target
    # The engine cache outlives the test: the next test's "plantpg" is another database.
    engines.dispose(target)


@pytest.fixture
def password(plant) -> str:
    secret = _url(plant).password
    assert secret
    return secret


def test_snapshot_change_restore_gives_back_exactly_the_snapshot(plant):
    snap = service.create_snapshot(plant, note="before", username="tester")
    assert re.fullmatch(r"plantpg-\d{8}-\d{6}-[0-9a-f]{8}\.pgdump", snap.name)
    assert snap.path.parent == service.folder_for(plant)
    assert snap.path.read_bytes()[:5] == b"PGDMP"
    sidecar = json.loads(Path(f"{snap.path}.json").read_text())
    assert sidecar["source_path"] == plant and sidecar["source_display_name"] == "Plant PG"
    assert sidecar["schema_state"] == "up_to_date" and sidecar["note"] == "before"
    assert sidecar["size"] == snap.path.stat().st_size
    # Changes: one company deleted, one renamed, two added.
    with psycopg.connect(**_url(plant).libpq_params(), autocommit=True) as conn:
        conn.execute("DELETE FROM companies_company WHERE name = 'Globex'")
        conn.execute("UPDATE companies_company SET name = 'Initech 2' WHERE name = 'Initech'")
    add_rows(plant, companies=["Umbrella", "Hooli"])
    changed = _companies(plant)

    result = service.restore_snapshot(plant, snap.name, username="tester")

    assert _companies(plant) == ["Acme", "Globex", "Initech"]
    assert result.restored.name == snap.name and result.kept_database == ""
    assert result.safety is not None and result.safety.kind == "safety"
    assert result.downtime is not None and result.downtime < 2.0
    assert _snapshot_companies(plant, result.safety) == changed
    # Nothing is left on the server but the live database.
    assert _work_databases(plant) == []
    # New rows go on after the restored ones (the sequences came back too).
    add_rows(plant, companies=["After"])
    assert _companies(plant)[-1] == "After"


def test_the_sidecar_records_the_attachments_and_later_audit_entries_are_carried(plant):
    from nukeworks.attachments.models import Attachment
    from nukeworks.companies.models import Company

    digest = "ab" * 32
    alias = engines.register(plant).alias
    with state.override(alias):
        company = Company.objects.get(name="Acme")
        Attachment.objects.create(
            company=company, sha256=digest, size=3, name="a.txt", content_type="text/plain"
        )
    connections[alias].close()
    snap = service.create_snapshot(plant, username="tester")
    assert snap.payloads == (digest,)
    assert json.loads(Path(f"{snap.path}.json").read_text())["payloads"] == [digest]

    result = service.restore_snapshot(plant, snap.name, username="tester")
    # The entry recording the snapshot itself was written after its moment: carried over.
    assert result.carried_audit_entries >= 1
    created = [e for e in _audit(plant) if e.action == "snapshot.create"]
    assert any(snap.name in e.target for e in created)


def test_a_snapshot_of_a_newer_schema_is_refused_after_a_trial_restore(plant):
    with psycopg.connect(**_url(plant).libpq_params(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO django_migrations (app, name, applied) "
            "VALUES ('companies', '0999_future', now())"
        )
        snap = service.create_snapshot(plant)
        conn.execute("DELETE FROM django_migrations WHERE name = '0999_future'")
    assert snap.schema_state == "newer"
    add_rows(plant, companies=["Kept"])
    with pytest.raises(service.SnapshotError, match="newer version of NukeWorks"):
        service.restore_snapshot(plant, snap.name)
    assert "Kept" in _companies(plant) and _work_databases(plant) == []
    [failure] = [e for e in _audit(plant) if e.action == "snapshot.restore"]
    assert failure.outcome == "failure"


def test_the_live_database_is_opened_again_when_the_swap_fails(plant):
    url = _url(plant)
    with (
        pytest.raises(pg.PgFailed, match="does not exist"),
        pg.maintenance_lock(url, 5) as admin,
        pg.closed(admin, url, url.dbname),
    ):
        pg.swap(admin, url.dbname, "no_such_database", "t_never")
    assert _companies(plant) == ["Acme", "Globex", "Initech"]
    assert _work_databases(plant) == []


def test_pages_create_list_download_restore_and_delete(plant, password):
    client = _signed_in(plant)
    response = client.post("/snapshots/create", {"note": "via the page"}, follow=True)
    [snap] = service.list_snapshots(plant)
    assert f"Snapshot {snap.name} created." in messages_of(response)
    page = client.get("/snapshots/").content.decode()
    assert snap.name in page and "via the page" in page and password not in page

    download = client.get(f"/snapshots/{snap.name}/download")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/octet-stream"
    assert b"".join(download.streaming_content)[:5] == b"PGDMP"

    assert client.post("/companies/new/", {"name": "Later", "country": "X"}).status_code == 302
    confirm = client.get(f"/snapshots/{snap.name}/restore").content.decode()
    assert "Restore snapshot" in confirm and password not in confirm
    restored = client.post(f"/snapshots/{snap.name}/restore", follow=True)
    page = restored.content.decode()
    assert any("safety snapshot" in m for m in messages_of(restored)), messages_of(restored)
    assert "Later" not in _companies(plant) and password not in page
    # The session is still signed in to the restored database and works on it.
    assert "Acme" in client.get("/companies/").content.decode()

    safety = next(s for s in service.list_snapshots(plant) if s.kind == "safety")
    assert client.post(f"/snapshots/{safety.name}/delete").status_code == 302
    assert [s.name for s in service.list_snapshots(plant)] == [snap.name]

    actions = [(e.action, e.outcome) for e in _audit(plant)]
    for wanted in ("snapshot.create", "snapshot.download", "snapshot.restore", "snapshot.delete"):
        assert (wanted, "success") in actions
    for entry in _audit(plant):
        assert password not in f"{entry.target} {entry.detail}"


def test_non_admins_are_refused(plant):
    client = _signed_in(plant, CLERK)
    assert client.get("/snapshots/").status_code == 403
    assert client.post("/snapshots/create", {"note": "x"}).status_code == 403
    assert service.list_snapshots(plant) == []


def test_the_command_and_the_api(plant, password):
    out = io.StringIO()
    call_command("snapshot", "create", "--database", "plantpg", "--note", "cli", stdout=out)
    call_command("snapshot", "list", "--database", "plantpg", stdout=out)
    [snap] = service.list_snapshots(plant)
    add_rows(plant, companies=["Between"])
    call_command("snapshot", "restore", snap.name, "--database", "plantpg", "--noinput", stdout=out)
    assert "Between" not in _companies(plant)
    call_command("snapshot", "prune", "--database", "plantpg", "--dry-run", stdout=out)
    text = out.getvalue()
    assert snap.name in text and "Safety snapshot:" in text and password not in text
    assert "0 snapshot(s) would be deleted" in text

    client = _signed_in(plant)
    listing = client.get("/api/v1/databases/current/snapshots/")
    assert listing.status_code == 200
    names = [s["name"] for s in listing.json()["snapshots"]]
    assert snap.name in names and len(names) == 2
    created = client.post(
        "/api/v1/databases/current/snapshots/", {"note": "api"}, content_type="application/json"
    )
    assert created.status_code == 201 and created.json()["name"].endswith(".pgdump")
    add_rows(plant, companies=["Via API"])
    answer = client.post(f"/api/v1/databases/current/snapshots/{created.json()['name']}/restore")
    assert answer.status_code == 200, answer.content
    assert answer.json()["safety"]["kind"] == "safety"
    assert "Via API" not in _companies(plant) and password not in answer.content.decode()


def test_an_altered_snapshot_is_refused_and_the_database_untouched(plant):
    snap = service.create_snapshot(plant)
    with open(snap.path, "r+b") as fh:
        fh.seek(20)
        fh.write(b"\x00\x01\x02")
    add_rows(plant, companies=["Kept"])
    with pytest.raises(service.SnapshotError, match="no longer matches the checksum"):
        service.restore_snapshot(plant, snap.name)
    assert "Kept" in _companies(plant) and _work_databases(plant) == []


def test_a_request_during_the_swap_is_refused_never_sent_elsewhere(plant, make_database):
    """Another server's request while the database is closed: a 503, no fallback."""
    home = make_database(name="Home", users=[ADMIN])
    client = Client()
    select(client, home)
    select(client, plant)
    sign_in(client, *ADMIN[:2])
    url = _url(plant)
    label = catalog.label_of(plant)
    token = (
        Client()
        .post(
            f"/api/v1/databases/{label}/auth/token",
            {"username": ADMIN[0], "password": ADMIN[1]},
            content_type="application/json",
        )
        .json()["token"]
    )
    with pg.maintenance_lock(url, 5) as admin, pg.closed(admin, url, url.dbname):
        # A cached engine: the query's connection is refused.
        busy = client.post("/companies/new/", {"name": "During", "country": "X"})
        # A server that must validate it first (not cached there).
        engines.dispose(plant)
        again = client.post("/companies/new/", {"name": "During", "country": "X"})
        # The API of such a server: a 503 to retry, not "unavailable".
        engines.dispose(plant)
        api = Client().get(
            f"/api/v1/databases/{label}/companies/", headers={"Authorization": f"Token {token}"}
        )
    assert api.status_code == 503 and api.json()["error"]["code"] == "maintenance", api.content
    assert api.has_header("Retry-After")
    for response in (busy, again):
        assert response.status_code == 503
        page = response.content.decode()
        assert recovery.PG_MAINTENANCE in page and "Your change was not saved." in page
    assert client.session["selected_db_path"] == plant
    assert "During" not in _companies(plant)
    assert client.post("/companies/new/", {"name": "After", "country": "X"}).status_code == 302


# -- writers on two app servers during a restore -------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@dataclass
class Tally:
    """What one writer was told: acknowledged names (and when), refusals, anything else."""

    acknowledged: dict[str, float] = field(default_factory=dict)
    refused: int = 0
    unexpected: list[str] = field(default_factory=list)


def _pbkdf2(password: str) -> str:
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # The server runs the production hashers; few iterations keep the sign-in fast.
    return PBKDF2PasswordHasher().encode(password, "livetestsalt0123", iterations=1000)


def _gunicorn_writer(server: GunicornServer, target: str, stop, tally: Tally) -> None:
    browser = Browser(server.base)
    browser.select(target)
    status, page = browser.sign_in(REMOTE[0], REMOTE[1])
    assert f"Log out {REMOTE[0]}" in page, status
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(browser.jar), _NoRedirect
    )
    n = 0
    while not stop.is_set():
        name = f"remote-{n}"
        n += 1
        form = {"csrfmiddlewaretoken": browser.cookie("csrftoken") or "", "name": name}
        request = urllib.request.Request(
            server.base + "/companies/new/",
            data=urllib.parse.urlencode({**form, "country": "B"}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with opener.open(request, timeout=30) as response:
                status, location, body = response.status, "", ""
        except urllib.error.HTTPError as exc:
            status, location = exc.code, exc.headers.get("Location", "")
            body = exc.read().decode(errors="replace")
        if status == 302 and COMPANY_URL.search(location):
            tally.acknowledged[name] = time.monotonic()
        elif status == 503 and "Your change was not saved." in body:
            tally.refused += 1
        else:
            tally.unexpected.append(f"{status} {location} {body[:200]}")


def _local_writer(target: str, stop, tally: Tally) -> None:
    client = _signed_in(target)
    n = 0
    try:
        while not stop.is_set():
            name = f"local-{n}"
            n += 1
            response = client.post("/companies/new/", {"name": name, "country": "A"})
            # What the server does at the end of each request (the test client does not).
            close_old_connections()
            if response.status_code == 302 and COMPANY_URL.search(response["Location"]):
                tally.acknowledged[name] = time.monotonic()
            elif response.status_code == 503:
                tally.refused += 1
            else:
                tally.unexpected.append(f"{response.status_code}")
    finally:
        connections.close_all()


def test_writers_on_two_servers_lose_nothing_acknowledged_during_a_restore(plant, tmp_path):
    url = _url(plant)
    with psycopg.connect(**url.libpq_params(), autocommit=True) as conn:
        conn.execute(
            "UPDATE accounts_user SET password = %s WHERE username = %s",
            (_pbkdf2(REMOTE[1]), REMOTE[0]),
        )
    # Server B: its own machine-local folders and its own catalog file naming the database.
    server = GunicornServer(tmp_path / "server-b", workers=1, threads=4)
    catalog_file = server.root / "instance" / "catalog.json"
    store.FileStore(catalog_file).put("plantpg", store.new_entry(url.url(), ""), replace=False)
    server.start()
    stop = threading.Event()
    remote, local = Tally(), Tally()
    threads = [
        threading.Thread(target=_gunicorn_writer, args=(server, plant, stop, remote)),
        threading.Thread(target=_local_writer, args=(plant, stop, local)),
    ]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while min(len(remote.acknowledged), len(local.acknowledged)) < 20:
            assert time.monotonic() < deadline, "the writers did not get going"
            time.sleep(0.05)
        # Taken while both write (and after their sign-ins rewrote their password hashes).
        snap = service.create_snapshot(plant, note="base")
        time.sleep(0.5)
        began = time.monotonic()
        result = service.restore_snapshot(plant, snap.name, username="admin")
        ended = time.monotonic()
        time.sleep(1.0)  # both keep writing on the restored database
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        server.stop()
    assert result.safety is not None
    live = set(_companies(plant))
    safety = set(_snapshot_companies(plant, result.safety))
    for tally in (remote, local):
        assert tally.unexpected == []
        lost = {name for name in tally.acknowledged if name not in live | safety}
        assert lost == set()
        # Acknowledged after the restore returned: in the live database.
        late = {name for name, at in tally.acknowledged.items() if at > ended}
        assert late and late <= live
        # Acknowledged before it began: in the safety snapshot.
        early = {name for name, at in tally.acknowledged.items() if at < began}
        assert early <= safety
    print(
        f"restore {ended - began:.3f}s, closed to clients {result.downtime * 1000:.1f} ms; "
        f"server B: {len(remote.acknowledged)} saved, {remote.refused} refused (503); "
        f"server A: {len(local.acknowledged)} saved, {local.refused} refused"
    )


def test_a_database_left_closed_by_a_dead_restore_reopens_itself(plant):
    """A restore killed mid-swap leaves the database closed; the next request heals it."""
    client = Client()
    select(client, plant)
    sign_in(client, *ADMIN[:2])
    url = _url(plant)
    # What a killed restore leaves: closed, and nobody holding the maintenance lock.
    with psycopg.connect(url.with_dbname("postgres").url(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{url.dbname}" WITH ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (url.dbname,),
        )
    # Served by a new connection, as every request is under the shipped CONN_MAX_AGE=0.
    connections.close_all()
    refused = client.post("/companies/new/", {"name": "While closed", "country": "X"})
    assert refused.status_code == 503
    assert "Your change was not saved." in refused.content.decode()
    assert client.post("/companies/new/", {"name": "Healed", "country": "X"}).status_code == 302
    assert "Healed" in _companies(plant) and "While closed" not in _companies(plant)
    # A restore at work (it holds the lock) is never reopened under its feet.
    with pg.maintenance_lock(url, 5) as admin, pg.closed(admin, url, url.dbname):
        assert client.get("/companies/").status_code == 503
        with psycopg.connect(url.with_dbname("postgres").url()) as conn:
            allowed = conn.execute(
                "SELECT datallowconn FROM pg_database WHERE datname = %s", (url.dbname,)
            ).fetchone()[0]
        assert allowed is False
