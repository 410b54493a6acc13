"""SQLite settings of every alias: pragmas read back, IMMEDIATE transactions, network journal."""

from __future__ import annotations

import builtins
import io
import sqlite3

import pytest
from django.core import checks
from django.db import connections, transaction

from dbselect import engines
from dbselect.files import paths


def _pragmas(alias: str) -> dict[str, object]:
    with connections[alias].cursor() as cursor:
        values = {}
        for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout"):
            cursor.execute(f"PRAGMA {name}")
            values[name] = cursor.fetchone()[0]
    return values


def test_local_file_gets_wal_full_sync_foreign_keys_and_busy_timeout(make_database):
    path = str(make_database())
    engine = engines.register(path)
    assert engine.journal_mode == "wal"
    assert not engine.network
    assert _pragmas(engine.alias) == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 2,  # FULL
        "busy_timeout": 5000,
    }


def test_synchronous_and_busy_timeout_are_configurable(make_database, settings):
    settings.DBSELECT = {**settings.DBSELECT, "SYNCHRONOUS": "normal", "BUSY_TIMEOUT": 1.5}
    engine = engines.register(str(make_database()))
    values = _pragmas(engine.alias)
    assert values["synchronous"] == 1  # NORMAL
    assert values["busy_timeout"] == 1500


def test_unknown_synchronous_mode_is_a_system_check_error(settings):
    """Reported by `manage.py check` (dbselect.E004), never by a crash at the first connection."""
    settings.DBSELECT = {**settings.DBSELECT, "SYNCHRONOUS": "FULL; DROP TABLE x"}
    errors = [e for e in checks.run_checks() if e.id == "dbselect.E004"]
    assert len(errors) == 1 and "SYNCHRONOUS" in errors[0].msg
    # Meanwhile the text never reaches a PRAGMA: connections keep the safe default.
    init = engines.connection_options(network=False)["init_command"]
    assert "DROP" not in init and "PRAGMA synchronous=FULL;" in init


def test_transactions_take_the_write_lock_at_begin(make_database):
    path = str(make_database())
    alias = engines.register(path).alias
    assert connections[alias].settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    other = sqlite3.connect(path, timeout=0)
    try:
        with transaction.atomic(using=alias):
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")  # a read only, yet the write lock is taken
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()


FAKE_MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
//filer/plant /mnt/plant\\040share cifs rw,vers=3.0 0 0
filer:/export /srv/nfs nfs4 rw,relatime 0 0
proc /proc proc rw 0 0
"""


@pytest.fixture
def fake_proc_mounts(monkeypatch):
    """Serve FAKE_MOUNTS as /proc/mounts to the network-mount detection."""
    real_open = builtins.open

    def fake_open(file, *args, **kwargs):
        if file == "/proc/mounts":
            return io.StringIO(FAKE_MOUNTS)
        return real_open(file, *args, **kwargs)

    paths._network_mounts.cache_clear()
    monkeypatch.setattr(builtins, "open", fake_open)
    yield
    monkeypatch.undo()
    paths._network_mounts.cache_clear()


def test_proc_mounts_network_file_systems_are_recognised(fake_proc_mounts):
    assert paths._network_mounts() == ("/mnt/plant share", "/srv/nfs")
    assert paths.is_network_path("/srv/nfs/plant/nukeworks.sqlite")
    assert paths.is_network_path("/mnt/plant share/a.sqlite")
    assert not paths.is_network_path("/srv/nfsother/a.sqlite")
    assert not paths.is_network_path("/home/a.sqlite")


def test_file_on_a_network_mount_is_opened_with_the_rollback_journal(make_database, monkeypatch):
    path = make_database()
    engines.dispose(str(path))  # cached as a local file while it was being made
    monkeypatch.setattr(paths, "_network_mounts", lambda: (str(path.parent),))
    engine = engines.register(str(path))
    assert engine.network and engine.journal_mode == "delete"
    assert _pragmas(engine.alias)["journal_mode"] == "delete"
