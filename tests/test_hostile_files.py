"""Untrusted database files: read-only, defensive, nothing executed, nothing left beside them."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client

from dbselect import session as db_session
from dbselect.files import validation
from dbselect.files.schema import SchemaState
from dbselect.files.validation import ValidationFailed, inspect_database, open_readonly, read_header
from tests.helpers import messages_of, select


def folder_state(folder: Path) -> dict[str, str]:
    """Return every file and folder under `folder` with a digest of each file's bytes.

    A `-shm` file is listed but not hashed: it is SQLite's shared-memory index, which every
    reader updates (read marks, recovery) even with `mode=ro`; it holds no data.
    """
    found: dict[str, str] = {}
    for parent, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.join(parent, name)] = "dir"
        for name in files:
            full = Path(parent, name)
            found[str(full)] = (
                "shm" if name.endswith("-shm") else hashlib.sha256(full.read_bytes()).hexdigest()
            )
    return found


def _other_app(path: Path, *, wal: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (1.5)")
    return conn


def _wal_checkpointed(folder: Path, make_database) -> Path:
    conn = _other_app(folder / "a.sqlite", wal=True)
    conn.close()  # last connection: checkpointed, -wal and -shm removed
    return folder / "a.sqlite"


def _wal_with_wal_only(folder: Path, make_database) -> Path:
    """A crashed writer's files copied without -shm (SQLite's mode=ro would create one)."""
    live = folder.parent / "live-wal-only"
    live.mkdir()
    conn = _other_app(live / "a.sqlite", wal=True)
    conn.execute("INSERT INTO invoices (total) VALUES (2.5)")
    shutil.copy(live / "a.sqlite", folder / "a.sqlite")
    shutil.copy(live / "a.sqlite-wal", folder / "a.sqlite-wal")
    conn.close()
    return folder / "a.sqlite"


def _wal_with_wal_and_shm(folder: Path, make_database) -> Path:
    live = folder.parent / "live-both"
    live.mkdir()
    conn = _other_app(live / "a.sqlite", wal=True)
    for suffix in ("", "-wal", "-shm"):
        shutil.copy(str(live / "a.sqlite") + suffix, str(folder / "a.sqlite") + suffix)
    conn.close()
    return folder / "a.sqlite"


def _rollback_mode(folder: Path, make_database) -> Path:
    _other_app(folder / "a.sqlite", wal=False).close()
    return folder / "a.sqlite"


def _rollback_with_hot_journal(folder: Path, make_database) -> Path:
    live = folder.parent / "live-journal"
    live.mkdir()
    conn = sqlite3.connect(live / "a.sqlite", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (randomblob(3000))")
    conn.execute("PRAGMA cache_size=1")
    conn.execute("BEGIN")
    for _ in range(6):  # spill the cache so the journal is written mid-transaction
        conn.execute("INSERT INTO t SELECT randomblob(3000) FROM t")
    shutil.copy(live / "a.sqlite", folder / "a.sqlite")
    shutil.copy(live / "a.sqlite-journal", folder / "a.sqlite-journal")
    conn.execute("ROLLBACK")
    conn.close()
    return folder / "a.sqlite"


def _needs_migration(folder: Path, make_database, old_database=None) -> Path:
    return old_database


def _newer(folder: Path, make_database) -> Path:
    path = make_database(name="From the future", path=folder / "future.sqlite")
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO django_migrations (app, name, applied) "
        "VALUES ('companies', '9999_from_the_future', '2030-01-01')"
    )
    conn.commit()
    conn.close()
    return path


REFUSED = {
    "WAL file, checkpointed": (_wal_checkpointed, "not a NukeWorks one"),
    "WAL file with -wal but no -shm": (_wal_with_wal_only, "not a NukeWorks one"),
    "WAL file with -wal and -shm": (_wal_with_wal_and_shm, "not a NukeWorks one"),
    "rollback-journal file": (_rollback_mode, "not a NukeWorks one"),
    "rollback file with a hot journal": (_rollback_with_hot_journal, "unfinished transaction"),
    "NukeWorks file needing migration": (None, "needs migration before it can be used"),
    "NukeWorks file from a newer version": (_newer, "newer version of NukeWorks"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_refused_file_is_left_exactly_as_it_was(case, tmp_path, make_database, old_database):
    build, reason = REFUSED[case]
    if build is None:
        path = old_database
    else:
        folder = tmp_path / "case"
        folder.mkdir()
        path = build(folder, make_database)
    before = folder_state(path.parent)
    client = Client()
    response = select(client, path)
    # 403: only an administrator may approve a migration (the lead's migration flow).
    assert response.status_code == (403 if build is None else 400)
    assert any(reason in m for m in messages_of(response)), messages_of(response)
    assert folder_state(path.parent) == before  # no -wal/-shm/-journal, no byte changed
    assert db_session.SELECTED_PATH not in client.session


def test_wal_only_file_is_read_without_creating_shm(tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    path = _wal_with_wal_only(folder, None)
    header, _ = read_header(str(path))
    assert header.wal
    assert validation.needs_immutable(str(path), header)
    inspect_database(str(path))
    assert sorted(os.listdir(folder)) == ["a.sqlite", "a.sqlite-wal"]


def test_validation_connection_is_defensive(make_database):
    path = make_database(name="Defended")
    header, _ = read_header(str(path))
    conn = open_readonly(str(path), header)
    try:
        assert conn.execute("PRAGMA trusted_schema").fetchone() == (0,)
        assert conn.execute("PRAGMA cell_size_check").fetchone() == (1,)
        assert conn.execute("PRAGMA query_only").fetchone() == (1,)
        assert conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) == 1_000_000
        assert conn.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED) == 0
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only"):
            conn.execute("DELETE FROM companies_company")
    finally:
        conn.close()


def test_readonly_uri_escapes_every_special_character():
    uri = validation.readonly_uri("/srv/a b/c?d#e%f.sqlite")
    assert uri == "file:///srv/a%20b/c%3Fd%23e%25f.sqlite?mode=ro"
    assert validation.readonly_uri("//server/share/x.sqlite", immutable=True) == (
        "file:////server/share/x.sqlite?mode=ro&immutable=1"
    )


def _booby_trapped(path: Path) -> None:
    """Replace views and add triggers that fail loudly if anything runs them."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        DROP TABLE system_settings;
        CREATE VIEW system_settings AS SELECT 'db_display_name' AS key, boom() AS value;
        CREATE TRIGGER trap AFTER INSERT ON companies_company BEGIN SELECT boom(); END;
        """
    )
    conn.commit()
    conn.close()


def test_views_and_triggers_of_a_file_are_never_run(make_database):
    """A file with triggers or views is refused, naming them; none of them ran."""
    path = make_database(name="Trapped", companies=["Co"])
    _booby_trapped(path)
    before = folder_state(path.parent)
    with pytest.raises(ValidationFailed) as caught:
        inspect_database(str(path))  # would raise "no such function: boom" if run
    assert caught.value.reason == (
        "The file defines triggers or views that NukeWorks did not create "
        '(trigger "trap" on "companies_company", view "system_settings"). '
        "They would run on the server, so the file is not opened."
    )
    assert folder_state(path.parent) == before


def test_django_migrations_as_a_view_is_not_read(tmp_path):
    path = tmp_path / "fake.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE VIEW django_migrations AS SELECT boom() AS app, 1 AS name")
    conn.commit()
    conn.close()
    assert inspect_database(str(path)).state is SchemaState.NOT_NUKEWORKS


def test_huge_values_are_refused_not_loaded(tmp_path):
    path = tmp_path / "huge.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE django_migrations (id INTEGER PRIMARY KEY, app, name, applied)")
    conn.execute("INSERT INTO django_migrations (app, name) VALUES (zeroblob(2000000), 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(ValidationFailed, match="too big"):
        inspect_database(str(path))


def test_slow_validation_is_interrupted(make_database, monkeypatch):
    path = make_database(name="Slow")
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO django_migrations (app, name, applied) VALUES (?, ?, '2020-01-01')",
        [(f"app{i}", f"m{i}") for i in range(20_000)],
    )
    conn.commit()
    conn.close()
    monkeypatch.setattr(validation, "VALIDATION_TIME_LIMIT", 0.0)
    with pytest.raises(ValidationFailed) as caught:
        inspect_database(str(path))
    assert caught.value.reason == "Reading the file took too long; it was not validated."


def test_proc_files_reporting_size_zero_are_read_as_content(tmp_path):
    with pytest.raises(ValidationFailed, match="not a SQLite database"):
        read_header("/proc/self/environ")


REPO = Path(__file__).resolve().parent.parent
# What the child run as `nobody` imports before the test's own code.
NOBODY_PRELUDE = "import django\ndjango.setup()\n"
NOBODY_IMPORTS = ("dbselect.files.browse", "dbselect.files.paths", "dbselect.files.validation")


def _world_traversable(path: Path) -> bool:
    """Return True when every user may pass through `path` and all its parents."""
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def _imported_top_level(roots: list[Path], scratch: Path) -> list[Path]:
    """Return the packages (folders) and modules (files) under `roots` that the child imports.

    Found by importing the same modules in a child of our own, so the list follows the code:
    Django, its dependencies and the project's packages, nothing of pytest.
    """
    code = (
        NOBODY_PRELUDE
        + "".join(f"import {name}\n" for name in NOBODY_IMPORTS)
        + "import json, sys\n"
        "print(json.dumps([getattr(m, '__file__', None) for n, m in list(sys.modules.items())"
        " if '.' not in n]))\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(scratch),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    found: set[Path] = set()
    for name in json.loads(result.stdout.splitlines()[-1]):
        if not name:
            continue
        file = Path(name).resolve()
        top = file.parent if file.name == "__init__.py" else file
        if top.parent in roots:
            found.add(top)
    return sorted(found)


def _world_readable_copy(sources: list[Path], target: Path) -> None:
    """Copy `sources` into `target`, readable by everybody whatever the umask of the checkout."""
    for source in sources:
        if source.is_dir():
            # __pycache__ included: the child may not write one and would compile every time.
            shutil.copytree(source, target / source.name, symlinks=False)
        else:
            shutil.copy2(source, target / source.name)
    for parent, _, files in os.walk(target):
        os.chmod(parent, 0o755)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o644)


@pytest.fixture(scope="module")
def nobody_python() -> Iterator[tuple[str, dict[str, str]]]:
    """An interpreter and environment with which `nobody` can run the project's code.

    The checkout may lie in a folder `nobody` cannot enter (a fresh clone inside `mktemp -d`),
    and so may the venv's interpreter (pyenv under /root): the child gets a world-readable
    copy of the packages it imports in a world-traversable temporary folder, and the first
    Python 3.11+ it may execute (the venv's own, else the system's).
    """
    nobody = pwd.getpwnam("nobody")
    bases = [Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")]
    base = next((b for b in bases if b.is_dir() and _world_traversable(b)), None)
    if base is None:
        pytest.skip("no temporary folder that the user 'nobody' may enter")
    root = Path(tempfile.mkdtemp(prefix="nukeworks-nobody-", dir=base))
    try:
        paths = sysconfig.get_paths()
        roots = sorted({Path(paths["purelib"]).resolve(), Path(paths["platlib"]).resolve(), REPO})
        home = root / "home"
        home.mkdir()
        _world_readable_copy(_imported_top_level(roots, home), root / "lib")
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        root.chmod(0o755)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(root / "lib"),
            "HOME": str(home),
            # tests.settings makes its folders with mkdtemp: somewhere `nobody` may write.
            "TMPDIR": str(home),
        }
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        candidates = [
            sys.executable,
            *(
                f"{folder}/{name}"
                for name in (version, "python3")
                for folder in ("/usr/bin", "/usr/local/bin")
            ),
        ]
        for interpreter in dict.fromkeys(candidates):
            try:
                probe = _run_as_nobody(
                    [interpreter, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"],
                    env,
                    timeout=60,
                )
            except (PermissionError, FileNotFoundError):
                continue
            if probe.returncode == 0:
                yield interpreter, env
                return
        pytest.skip("no Python 3.11+ interpreter that the user 'nobody' may run")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_as_nobody(
    args: list[str], env: dict[str, str], **kwargs: object
) -> subprocess.CompletedProcess:
    """Run `args` as the unprivileged user `nobody`, from /, with its output captured."""
    nobody = pwd.getpwnam("nobody")
    return subprocess.run(
        args,
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],
        env=env,
        cwd="/",
        capture_output=True,
        **kwargs,
    )


def _as_nobody(python: tuple[str, dict[str, str]], code: str) -> str:
    """Run `code` in a child process as the unprivileged user `nobody`; return its output."""
    interpreter, env = python
    result = _run_as_nobody([interpreter, "-c", NOBODY_PRELUDE + code], env, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@contextlib.contextmanager
def _traversable_by_others(path: Path) -> Iterator[None]:
    """Let other users through `path` and its parents (pytest's folders are 0700)."""
    changed = [p for p in [path, *path.parents] if not p.stat().st_mode & 0o001]
    for p in changed:
        p.chmod(p.stat().st_mode | 0o001)
    try:
        yield
    finally:
        for p in changed:
            p.chmod(p.stat().st_mode & ~0o001)


def test_file_and_folder_without_read_permission(tmp_path, make_database, request):
    """Root reads every file: as root, the check runs in a child process as `nobody`."""
    path = make_database(name="Secret", path=tmp_path / "secret.sqlite")
    path.chmod(0o600)
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    code = (
        "from dbselect.files.browse import list_folder\n"
        "from dbselect.files.paths import PathRejected\n"
        "from dbselect.files.validation import ValidationFailed, inspect_database\n"
        f"try:\n    inspect_database({str(path)!r})\n"
        "except ValidationFailed as e:\n    print(e.reason)\n"
        f"try:\n    list_folder({str(folder)!r})\n"
        "except PathRejected as e:\n    print(e)\n"
    )
    before = folder_state(tmp_path)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("running as root and there is no user 'nobody' to drop to")
        python = request.getfixturevalue("nobody_python")
        with _traversable_by_others(tmp_path):
            output = _as_nobody(python, code)
    else:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(code, {})
        output = buffer.getvalue().strip()
    assert output.splitlines() == [
        "The server is not allowed to read this file.",
        "The server is not allowed to read this folder.",
    ]
    assert folder_state(tmp_path) == before


def test_unreadable_file_through_the_selector(home_client, tmp_path, monkeypatch):
    """The same refusal through POST /select-db (as root, open() is made to refuse)."""
    client, home = home_client
    secret = tmp_path / "secret.sqlite"
    secret.write_bytes(b"x" * 4096)
    real_open = os.open

    def refusing_open(name, flags, *args, **kwargs):
        if str(name) == str(secret):
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(validation.os, "open", refusing_open)
    response = select(client, secret)
    assert response.status_code == 400
    assert any(
        m.endswith("Reason: The server is not allowed to read this file.")
        for m in messages_of(response)
    )
    assert client.session[db_session.SELECTED_PATH] == str(home)


@pytest.fixture
def home_client(make_database) -> tuple[Client, Path]:
    path = make_database(name="Home Base")
    client = Client()
    assert select(client, path).status_code == 302
    return client, path
