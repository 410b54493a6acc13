"""The snapshots folder is untrusted: only regular SQLite files with a matching sidecar count.

A symbolic link named like a snapshot once made /snapshots/<name>/download send the server's
secret key and /etc/shadow. Every test here puts something hostile into a real database's
snapshots/ folder and goes through the pages with the full middleware stack, signed in as an
admin of that database.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from snapshots.sqlite_copy import sha256_of
from tests.helpers import company_names, messages_of, select, sign_in

ADMIN = ("admin", "admin-pw", True)
FAKE = "alpha-20240101-000000-0123abcd.sqlite"  # named like a snapshot of databases/alpha/


def _signed_in(path: Path) -> Client:
    client = Client()
    select(client, path)
    sign_in(client, "admin", "admin-pw")
    return client


def _snapshot_files(database: Path) -> list[Path]:
    """The regular snapshot files in the database's folder (links and FIFOs left out)."""
    folder = database.parent / "snapshots"
    return sorted(
        p
        for p in folder.iterdir()
        if p.name.startswith("alpha-")
        and p.suffix == ".sqlite"
        and p.is_file()
        and not p.is_symlink()
    )


def _run(*args: str) -> str:
    out = StringIO()
    call_command("snapshot", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def _body(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


def _sidecar_for(entry: Path, data_file: Path, **override: object) -> Path:
    """Write the sidecar an attacker would write: the entry's name, the data's size and hash."""
    sidecar = Path(f"{entry}.json")
    data = {
        "name": entry.name,
        "size": data_file.stat().st_size,
        "sha256": sha256_of(data_file),
        "created_at": "2024-01-01T00:00:00+00:00",
        "created_by": "mallory",
        "note": "totally legit",
        "kind": "manual",
        **override,
    }
    sidecar.write_text(json.dumps(data))
    return sidecar


def _sqlite_file(path: Path, row: str) -> Path:
    """A SQLite file this process never opened through Django (so it is not a live file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE secrets (value TEXT)")
    conn.execute("INSERT INTO secrets VALUES (?)", (row,))
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def alpha(make_database) -> Path:
    """databases/alpha/nukeworks.sqlite with an admin, one company and an empty snapshots/."""
    path = make_database(name="Alpha", companies=["Alpha Co"], users=[ADMIN], label="alpha")
    (path.parent / "snapshots").mkdir()
    return path


def _every_page(client: Client, name: str) -> dict[str, object]:
    """Request every snapshot URL for `name`: GET and POST of restore and delete, download."""
    return {
        "download": client.get(f"/snapshots/{name}/download"),
        "restore GET": client.get(f"/snapshots/{name}/restore"),
        "restore POST": client.post(f"/snapshots/{name}/restore"),
        "delete GET": client.get(f"/snapshots/{name}/delete"),
        "delete POST": client.post(f"/snapshots/{name}/delete"),
    }


def _not_listed(page: str, name: str) -> bool:
    return f"/snapshots/{name}/download" not in page and f"/snapshots/{name}/restore" not in page


@pytest.mark.parametrize("target_kind", ["secret key", "shadow-like file", "sqlite database"])
def test_a_symlink_named_like_a_snapshot_is_never_followed(alpha, tmp_path, target_kind):
    secret = secrets.token_hex(16)
    outside = tmp_path / "instance"
    outside.mkdir()
    if target_kind == "sqlite database":
        target = _sqlite_file(outside / "other-team.sqlite", f"HIDDEN-{secret}")
    else:
        target = outside / ("secret_key" if target_kind == "secret key" else "shadow")
        target.write_bytes(f"root:$6$SECRET-{secret}:19000:0:99999:7:::\n".encode())
    before = target.read_bytes()
    link = alpha.parent / "snapshots" / FAKE
    link.symlink_to(target)
    _sidecar_for(link, target)  # a perfect sidecar must not make a link a snapshot
    live_before = company_names(alpha)
    client = _signed_in(alpha)

    listing = client.get("/snapshots/")
    responses = {"list": listing, **_every_page(client, FAKE)}

    page = listing.content.decode()
    assert listing.status_code == 200 and _not_listed(page, FAKE)
    assert f"{FAKE} (a symbolic link)" in page
    for what, response in responses.items():
        if what != "list":
            assert response.status_code == 404, what
        assert secret.encode() not in _body(response), what
    assert link.is_symlink() and target.read_bytes() == before  # neither deleted nor written
    assert company_names(alpha) == live_before  # nothing was restored
    assert _snapshot_files(alpha) == []  # not even a safety snapshot: the restore never began


def test_a_symlinked_snapshot_folder_entry_is_not_deletable_even_by_prune(alpha, tmp_path):
    target = tmp_path / "keep-me.txt"
    target.write_text("precious")
    client = _signed_in(alpha)
    client.post("/snapshots/create", {"note": "one"})
    client.post("/snapshots/create", {"note": "two"})
    link = alpha.parent / "snapshots" / FAKE  # sorts as the oldest "snapshot"
    link.symlink_to(target)
    _sidecar_for(link, target)
    client.post("/snapshots/retention", {"max_snapshots": "1", "retention_days": ""})

    client.post("/snapshots/prune")

    assert link.is_symlink() and target.read_text() == "precious"
    page = client.get("/snapshots/").content.decode()
    assert "two" in page and "one" not in page.split("Ignored in the snapshots folder")[0]


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_fifo_or_folder_named_like_a_snapshot_is_ignored(alpha, kind):
    entry = alpha.parent / "snapshots" / FAKE
    if kind == "fifo":
        os.mkfifo(entry)  # opening it for reading would hang a worker with no writer
    else:
        entry.mkdir()
        (entry / "inside.txt").write_text("x")
    Path(f"{entry}.json").write_text(json.dumps({"name": FAKE, "size": 0, "sha256": "0" * 64}))
    client = _signed_in(alpha)

    page = client.get("/snapshots/").content.decode()
    responses = _every_page(client, FAKE)

    reason = "a named pipe" if kind == "fifo" else "a folder"
    assert f"{FAKE} ({reason})" in page and _not_listed(page, FAKE)
    assert {r.status_code for r in responses.values()} == {404}
    assert entry.exists()
    if kind == "folder":
        assert (entry / "inside.txt").read_text() == "x"


def test_a_snapshot_without_its_sidecar_is_reported_and_ignored(alpha):
    client = _signed_in(alpha)
    client.post("/snapshots/create", {"note": "orphan soon"})
    [snapshot] = [p for p in (alpha.parent / "snapshots").glob("alpha-*.sqlite")]
    Path(f"{snapshot}.json").unlink()
    content = snapshot.read_bytes()

    page = client.get("/snapshots/").content.decode()
    responses = _every_page(client, snapshot.name)

    assert f"{snapshot.name} (no matching sidecar)" in page
    assert _not_listed(page, snapshot.name) and "orphan soon" not in page
    assert {r.status_code for r in responses.values()} == {404}
    assert snapshot.read_bytes() == content  # not deleted


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"name": "alpha-20990101-000000-ffffffff.sqlite"}, "it records another file name"),
        ({"size": 12}, "it records another size"),
        ({"sha256": "not-a-digest"}, "it records no SHA-256"),
    ],
)
def test_a_sidecar_that_does_not_match_its_file_makes_it_ignored(alpha, override, reason):
    file = _sqlite_file(alpha.parent / "snapshots" / FAKE, "planted")
    _sidecar_for(file, file, **override)
    client = _signed_in(alpha)

    page = client.get("/snapshots/").content.decode()

    assert f"{FAKE} (no matching sidecar: {reason})" in page and _not_listed(page, FAKE)
    assert client.get(f"/snapshots/{FAKE}/download").status_code == 404


def test_a_symlinked_sidecar_does_not_count(alpha, tmp_path):
    file = _sqlite_file(alpha.parent / "snapshots" / FAKE, "planted")
    real_sidecar = _sidecar_for(tmp_path / FAKE, file)
    Path(f"{file}.json").symlink_to(real_sidecar)
    client = _signed_in(alpha)

    page = client.get("/snapshots/").content.decode()

    assert f"{FAKE} (no matching sidecar: the sidecar is a symbolic link)" in page
    assert client.get(f"/snapshots/{FAKE}/download").status_code == 404


def test_a_file_that_is_not_sqlite_is_ignored_even_with_a_sidecar(alpha):
    file = alpha.parent / "snapshots" / FAKE
    file.write_bytes(b"just some text, not a database\n" * 200)
    _sidecar_for(file, file)
    client = _signed_in(alpha)

    page = client.get("/snapshots/").content.decode()

    assert f"{FAKE} (not a SQLite file)" in page
    assert client.get(f"/snapshots/{FAKE}/download").status_code == 404


def test_a_hard_link_of_the_live_database_is_never_opened(alpha):
    """Opening and closing a descriptor of a live file would drop SQLite's locks."""
    client = _signed_in(alpha)  # alpha is now a file this process works on
    link = alpha.parent / "snapshots" / FAKE
    os.link(alpha, link)
    Path(f"{link}.json").write_text(
        json.dumps({"name": FAKE, "size": alpha.stat().st_size, "sha256": "0" * 64})
    )

    page = client.get("/snapshots/").content.decode()

    assert f"{FAKE} (a database file this server works on)" in page
    assert client.get(f"/snapshots/{FAKE}/download").status_code == 404
    assert client.post(f"/snapshots/{FAKE}/delete").status_code == 404
    assert link.exists()


def test_the_page_reports_ignored_entries_escaped(alpha):
    folder = alpha.parent / "snapshots"
    (folder / "<img src=x onerror=alert(1)>.sqlite").write_text("x")
    (folder / "line\nbreak & bidi\u202etxt.sqlite").write_text("x")
    (folder / os.fsdecode(b"latin1-\xe9.sqlite")).write_text("x")  # not UTF-8
    (folder / f"{FAKE}.json").write_text("{}")  # a sidecar whose snapshot is gone
    client = _signed_in(alpha)

    response = client.get("/snapshots/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Ignored in the snapshots folder: " in page
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.sqlite (not named like a snapshot)" in page
    assert r"line\nbreak &amp; bidi\u202etxt.sqlite" in page  # control characters shown
    assert r"latin1-\xe9.sqlite" in page
    assert f"{FAKE}.json (a sidecar without its snapshot)" in page


def test_real_snapshots_still_work_beside_ignored_entries(alpha, tmp_path):
    target = tmp_path / "secret_key"
    target.write_text("s3cr3t")
    (alpha.parent / "snapshots" / FAKE).symlink_to(target)
    client = _signed_in(alpha)
    created = client.post("/snapshots/create", {"note": "good one"}, follow=True)
    [snapshot] = _snapshot_files(alpha)

    page = created.content.decode()
    download = client.get(f"/snapshots/{snapshot.name}/download")

    assert f"/snapshots/{snapshot.name}/download" in page and "good one" in page
    assert f"{FAKE} (a symbolic link)" in page
    assert download.status_code == 200 and _body(download) == snapshot.read_bytes()
    restored = client.post(f"/snapshots/{snapshot.name}/restore", follow=True)
    assert any("was restored to snapshot" in m for m in messages_of(restored))


def test_a_symlinked_lock_file_is_not_followed(alpha, tmp_path):
    target = tmp_path / "created-through-the-link"
    (alpha.parent / "snapshots" / ".snapshots.lock").symlink_to(target)
    client = _signed_in(alpha)

    response = client.post("/snapshots/create", {"note": "x"}, follow=True)

    assert any("No snapshot was taken" in m for m in messages_of(response))
    assert not target.exists()
    assert ".snapshots.lock (a symbolic link)" in response.content.decode()


def test_the_command_lists_ignored_entries_and_refuses_them(alpha, tmp_path):
    target = tmp_path / "secret_key"
    target.write_text("s3cr3t")
    (alpha.parent / "snapshots" / FAKE).symlink_to(target)
    out = _run("list", "--database", "alpha")
    assert "Ignored in the snapshots folder" in out and f"{FAKE} (a symbolic link)" in out
    for action in ("restore", "delete"):
        with pytest.raises(CommandError, match="a symbolic link"):
            _run(action, FAKE, "--database", "alpha", "--noinput")
    assert target.read_text() == "s3cr3t"
