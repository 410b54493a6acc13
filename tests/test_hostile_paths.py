"""Hostile paths typed into POST /select-db: a clear 400, nothing created, session unchanged.

Every case runs twice: for a visitor already working on a database (who must stay on it) and
for a visitor with no database yet (who must stay on the selector). Each asserts the status,
the message, that no file or folder appeared anywhere under the test's folder, that the
selector's JSON state was not touched and that the session still points where it did.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client

from dbselect import session as db_session
from tests.helpers import messages_of, select

# Each builder makes the hostile input inside tmp_path (when it needs a file) and returns the
# raw text to type and the reason the selector must give.
Builder = Callable[[Path, Callable[..., Path]], tuple[str, str]]

NOT_SQLITE = (
    "The file is not a SQLite database (its header is wrong; is it encrypted or another "
    "kind of file?)."
)
NOT_REGULAR = "This path is not a regular file (it is a device, pipe or socket)."


def _empty(tmp: Path, make_database) -> tuple[str, str]:
    return "", "Enter the path of a database file."


def _whitespace(tmp: Path, make_database) -> tuple[str, str]:
    return "  \t \n ", "Enter the path of a database file."


def _relative(tmp: Path, make_database) -> tuple[str, str]:
    return "databases/default/nukeworks.sqlite", "Enter an absolute path"


def _traversal(tmp: Path, make_database) -> tuple[str, str]:
    # Resolves lexically to /etc/passwd: refused by its content, never created or read out.
    return str(tmp) + "/x/../../../../../../../../etc/passwd", NOT_SQLITE


def _traversal_to_missing(tmp: Path, make_database) -> tuple[str, str]:
    return str(tmp) + "/a/../b/../../nowhere/new.sqlite", "No file exists at this path."


def _directory(tmp: Path, make_database) -> tuple[str, str]:
    folder = tmp / "a-folder.sqlite"
    folder.mkdir()
    return str(folder), "This path is a folder, not a database file."


def _fifo(tmp: Path, make_database) -> tuple[str, str]:
    fifo = tmp / "pipe.sqlite"
    os.mkfifo(fifo)
    return str(fifo), NOT_REGULAR


def _dev_zero(tmp: Path, make_database) -> tuple[str, str]:
    return "/dev/zero", NOT_REGULAR


def _dev_urandom(tmp: Path, make_database) -> tuple[str, str]:
    return "/dev/urandom", NOT_REGULAR


def _proc_environ(tmp: Path, make_database) -> tuple[str, str]:
    return "/proc/self/environ", NOT_SQLITE


def _etc_passwd(tmp: Path, make_database) -> tuple[str, str]:
    return "/etc/passwd", NOT_SQLITE


def _zero_bytes(tmp: Path, make_database) -> tuple[str, str]:
    empty = tmp / "empty.sqlite"
    empty.write_bytes(b"")
    return str(empty), "The file is empty (0 bytes), not a SQLite database."


def _text_renamed(tmp: Path, make_database) -> tuple[str, str]:
    text = tmp / "notes.sqlite"
    text.write_text("Meeting notes\nnot a database at all\n" * 200)
    return str(text), NOT_SQLITE


def _truncated(tmp: Path, make_database) -> tuple[str, str]:
    real = make_database(name="Whole")
    cut = tmp / "cut.sqlite"
    cut.write_bytes(real.read_bytes()[:4096])
    return str(cut), "The file is truncated"


def _page_of(path: Path, table: str) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        query = "SELECT rootpage FROM sqlite_master WHERE name = ?"
        (root,) = conn.execute(query, (table,)).fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    finally:
        conn.close()
    return (root - 1) * page_size, page_size


def _corrupt_page(tmp: Path, make_database) -> tuple[str, str]:
    path = make_database(name="Damaged")
    offset, page_size = _page_of(path, "django_migrations")
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xa5" * page_size)
    return str(path), "The database file is corrupt (database disk image is malformed)."


def _corrupt_schema_page(tmp: Path, make_database) -> tuple[str, str]:
    path = make_database(name="Damaged schema")
    with open(path, "r+b") as fh:
        fh.seek(100)  # page 1 after the file header: the schema table's b-tree header
        fh.write(b"\xff" * 200)
    return str(path), "The database file is corrupt"


def _other_application(tmp: Path, make_database) -> tuple[str, str]:
    other = tmp / "accounts.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    conn.commit()
    conn.close()
    return str(other), "This is a SQLite database, but not a NukeWorks one"


def _garbage_header(tmp: Path, make_database) -> tuple[str, str]:
    garbage = tmp / "encrypted.sqlite"
    garbage.write_bytes(hashlib.sha512(b"seed").digest() * 128)  # 8 KiB, looks encrypted
    return str(garbage), NOT_SQLITE


def _bad_page_size(tmp: Path, make_database) -> tuple[str, str]:
    # A copy that this process never worked on: its header is read before SQLite opens it.
    path = tmp / "odd-page-size.sqlite"
    shutil.copyfile(make_database(name="Odd page size"), path)
    with open(path, "r+b") as fh:
        fh.seek(16)
        fh.write((1000).to_bytes(2, "big"))
    return str(path), "The SQLite header is corrupt (invalid page size)."


def _nul_byte(tmp: Path, make_database) -> tuple[str, str]:
    return str(tmp) + "/db\x00.sqlite", "The path contains a NUL character."


def _very_long(tmp: Path, make_database) -> tuple[str, str]:
    return "/" + "a" * 9_999, "The path is longer than 4096 characters."


def _long_component(tmp: Path, make_database) -> tuple[str, str]:
    return str(tmp / ("n" * 300)), "The file cannot be opened: File name too long."


def _symlink_loop(tmp: Path, make_database) -> tuple[str, str]:
    (tmp / "loop-a.sqlite").symlink_to(tmp / "loop-b.sqlite")
    (tmp / "loop-b.sqlite").symlink_to(tmp / "loop-a.sqlite")
    return str(tmp / "loop-a.sqlite"), "Too many levels of symbolic links"


def _dangling_symlink(tmp: Path, make_database) -> tuple[str, str]:
    (tmp / "dangling.sqlite").symlink_to(tmp / "target-that-does-not-exist.sqlite")
    return str(tmp / "dangling.sqlite"), "No file exists at this path."


def _unicode_missing(tmp: Path, make_database) -> tuple[str, str]:
    return str(tmp / "Ünïcödé folder ☢" / "my data base.sqlite"), "No file exists at this path."


def _unc_unreachable(tmp: Path, make_database) -> tuple[str, str]:
    return r"\\unreachable.invalid\share\nukeworks.sqlite", "No file exists at this path."


def _uri_tricks(tmp: Path, make_database) -> tuple[str, str]:
    # A path that would change meaning if pasted into a SQLite URI unescaped.
    return str(tmp / "x.sqlite?mode=rwc&vfs=unix-none#frag"), "No file exists at this path."


CASES: dict[str, Builder] = {
    "empty string": _empty,
    "whitespace": _whitespace,
    "relative path": _relative,
    "dot-dot traversal to /etc/passwd": _traversal,
    "dot-dot traversal to a missing file": _traversal_to_missing,
    "directory": _directory,
    "FIFO": _fifo,
    "/dev/zero": _dev_zero,
    "/dev/urandom": _dev_urandom,
    "/proc/self/environ": _proc_environ,
    "/etc/passwd": _etc_passwd,
    "0-byte file": _zero_bytes,
    "text file renamed .sqlite": _text_renamed,
    "first 4 KiB of a real database": _truncated,
    "corrupted django_migrations page": _corrupt_page,
    "corrupted schema page": _corrupt_schema_page,
    "SQLite database of another application": _other_application,
    "encrypted/garbage header": _garbage_header,
    "invalid page size in header": _bad_page_size,
    "NUL byte": _nul_byte,
    "10,000-character path": _very_long,
    "300-character file name": _long_component,
    "symlink loop": _symlink_loop,
    "dangling symlink": _dangling_symlink,
    "unicode and spaces (missing)": _unicode_missing,
    "UNC path to an unreachable server": _unc_unreachable,
    "SQLite URI parameters in the path": _uri_tricks,
}


def snapshot(root: Path) -> dict[str, str]:
    """Return every file and folder under `root` with a digest of each file's content."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.join(folder, name)] = "dir"
        for name in files:
            full = os.path.join(folder, name)
            if os.path.islink(full) or not os.path.isfile(full):
                found[full] = "special"
            else:
                found[full] = hashlib.sha256(Path(full).read_bytes()).hexdigest()
    return found


@pytest.fixture
def home(make_database) -> tuple[Client, Path]:
    """A visitor already working on a database called Home Base."""
    path = make_database(name="Home Base", companies=["Home Co"])
    client = Client()
    assert select(client, path).status_code == 302
    return client, path


def _refuse(
    client: Client, raw: str, reason: str, tmp_path: Path, home: Path | None = None
) -> list[str]:
    """POST `raw`; check the refusal and that nothing changed (but the home database's files,
    where the refusal is audited)."""

    def files() -> dict[str, str]:
        found = snapshot(tmp_path)
        return {k: v for k, v in found.items() if not (home and k.startswith(str(home)))}

    before = files()
    started = time.monotonic()
    response = select(client, raw)
    elapsed = time.monotonic() - started
    page = response.content.decode()
    assert response.status_code == 400
    texts = messages_of(response)
    assert any(reason in text for text in texts), texts
    assert "Traceback" not in page
    assert elapsed < 5, f"refusing took {elapsed:.1f} s"
    assert files() == before, "a file or folder was created or changed"
    return texts


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_hostile_path_keeps_the_working_database(case, home, tmp_path, make_database):
    client, home_path = home
    raw, reason = CASES[case](tmp_path, make_database)
    texts = _refuse(client, raw, reason, tmp_path, home_path)
    assert any(
        t.startswith(
            "The database you chose could not be opened; you are still working on Home Base."
        )
        for t in texts
    )
    assert client.session[db_session.SELECTED_PATH] == str(home_path)
    assert client.get("/companies/").status_code == 302  # still on Home Base (login page)
    assert client.session[db_session.SELECTED_PATH] == str(home_path)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_hostile_path_leaves_a_new_visitor_on_the_selector(case, tmp_path, make_database):
    raw, reason = CASES[case](tmp_path, make_database)
    client = Client()
    texts = _refuse(client, raw, reason, tmp_path)
    assert any(t.startswith("The database could not be opened. Reason: ") for t in texts)
    assert db_session.SELECTED_PATH not in client.session
    assert client.get("/companies/")["Location"].startswith("/select-db")


def test_secrets_of_refused_files_never_reach_the_page(home, tmp_path):
    client, _ = home
    for raw in ("/proc/self/environ", "/etc/passwd"):
        page = select(client, raw).content.decode()
        assert "root:x:0:0" not in page
        assert os.environ["SECRET_KEY"] not in page


def test_typed_path_is_escaped_on_the_page(home):
    client, _ = home
    raw = '/tmp/<script>alert("x")</script>.sqlite'
    page = select(client, raw).content.decode()
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page


def test_unicode_path_with_spaces_is_accepted(tmp_path, make_database):
    folder = tmp_path / "Ünïcödé folder ☢" / "sub folder"
    folder.mkdir(parents=True)
    path = make_database(name="Ünï Plant", path=folder / "my data base.sqlite")
    client = Client()
    response = select(client, str(path))
    assert response.status_code == 302
    assert client.session[db_session.SELECTED_PATH] == str(path)
    assert client.session[db_session.SELECTED_NAME] == "Ünï Plant"


def test_uri_characters_in_a_real_file_name_are_escaped(tmp_path, make_database):
    folder = tmp_path / "odd%20name?#"
    folder.mkdir()
    path = make_database(name="Odd", path=folder / "db?mode=rwc#x.sqlite")
    (tmp_path / "instance").mkdir(exist_ok=True)
    before = set(os.listdir(tmp_path))
    client = Client()
    assert select(client, str(path)).status_code == 302
    assert client.session[db_session.SELECTED_PATH] == str(path)
    # Unescaped, SQLite would have opened (and created) "odd name" or "db" instead.
    assert set(os.listdir(tmp_path)) == before


def test_unreachable_server_times_out_quickly(home, tmp_path, settings, monkeypatch):
    """A share that never answers: the request returns within the stat limit."""
    import threading

    import dbselect.files.validation as validation

    settings.DBSELECT = {**settings.DBSELECT, "STAT_TIMEOUT": 0.5}
    release = threading.Event()
    real_open = os.open

    def hanging_open(path, flags, *args, **kwargs):
        # \\deadserver\share\… is opened by its real path, /deadserver/share/… on Linux.
        if "/deadserver/" in str(path):
            release.wait(30)  # what open() on a dead SMB mount does
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(validation.os, "open", hanging_open)
    client, home_path = home
    try:
        started = time.monotonic()
        response = select(client, r"\\deadserver\share\nukeworks.sqlite")
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert response.status_code == 400
    assert any(
        "The location did not answer within 0.5 s (is the network share reachable?)." in m
        for m in messages_of(response)
    )
    assert elapsed < 3
    assert client.session[db_session.SELECTED_PATH] == str(home_path)
