"""One file, one engine, one journal mode: whatever spelling a visitor types.

A symlink, /proc/self/root/…, a //… path and a UNC-looking \\\\…\\… path of the same file all
reach the engine of its real path; "network file" is decided from the mount table of the real
path, so no spelling can switch a local file from WAL to the rollback journal for everybody.
"""

from __future__ import annotations

import os
import sqlite3

import pytest
from django.test import Client

from dbselect import engines
from dbselect.files import paths
from tests.helpers import select


def _spellings(real: str, link: str) -> list[str]:
    return [
        real,
        link,
        "/proc/self/root" + real,
        "/" + real,  # //tmp/…: POSIX may treat it apart, Linux does not
        "\\\\" + real.lstrip("/").replace("/", "\\"),  # \\tmp\…: UNC-looking, local on Linux
    ]


def _journal_mode(path: str) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def spelled(make_database, tmp_path) -> tuple[str, list[str]]:
    real = os.path.realpath(make_database(name="Plant"))
    link = tmp_path / "link-to-plant.sqlite"
    link.symlink_to(real)
    return real, _spellings(real, str(link))


def test_every_spelling_selects_the_same_file_with_one_engine(spelled):
    real, spellings = spelled
    sessions = []
    for spelling in spellings:
        client = Client()
        response = select(client, spelling)
        assert response.status_code == 302, spelling
        # The session works on the file's real path, whatever was typed.
        assert client.session["selected_db_path"] == real
        page = client.get("/login/")
        assert page.status_code == 200
        assert "Plant" in page.content.decode()
        sessions.append(client)
    cached = [e for e in engines.all() if e.path == real]
    assert len(cached) == 1
    assert not cached[0].network and cached[0].journal_mode == "wal"
    # An anonymous visitor's spelling never changed the journal of the file for everyone.
    assert _journal_mode(real) == "wal"


def test_a_unc_looking_path_is_local_on_linux(spelled):
    real, spellings = spelled
    for spelling in spellings:
        typed = paths.normalize_user_path(spelling)
        assert paths.real_path(typed) == real
        assert not engines.register(typed).network


def test_a_hard_link_reuses_the_engine_of_its_file(make_database, tmp_path):
    real = os.path.realpath(make_database(name="Linked"))
    hard = tmp_path / "hard-link.sqlite"
    os.link(real, hard)
    first = engines.register(real)
    assert engines.register(str(hard)) is first


def test_network_is_decided_by_the_mount_of_the_real_path(make_database, tmp_path, monkeypatch):
    """A symlink into a network mount is network; a // spelling of a local file is not."""
    share = make_database(name="On share")
    engines.dispose(os.path.realpath(share))  # writing its name registered it as local
    monkeypatch.setattr(paths, "_network_mounts", lambda: (str(share.parent),))
    link = tmp_path / "local-name.sqlite"
    link.symlink_to(share)
    engine = engines.register(str(link))
    assert engine.network and engine.journal_mode == "delete"
    assert engine.path == os.path.realpath(share)
    local = os.path.realpath(make_database(name="Local"))
    assert not engines.register("/" + local).network
