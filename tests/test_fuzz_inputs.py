"""Fuzz tests (hypothesis, 500+ examples each): user-typed paths, the browse folder, SQLite
headers and files, and the selector's JSON state file. No input may escape as an exception
(a 500 in the web server) or create a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from dbselect import selection, selector_cache
from dbselect import session as db_session
from dbselect.files.paths import PathRejected, normalize_user_path
from dbselect.files.validation import (
    SQLITE_MAGIC,
    SqliteHeader,
    ValidationFailed,
    inspect_database,
    parse_header,
)

FUZZ = hsettings(
    max_examples=500,
    deadline=None,
    database=None,  # write no .hypothesis/ folder into the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Characters that matter to paths, URIs, shells and SQLite, plus anything else.
PATH_PIECES = st.sampled_from(
    [
        "/",
        "\\",
        "\\\\",
        "//",
        ".",
        "..",
        "~",
        " ",
        "\t",
        "\n",
        "\x00",
        "%00",
        "%2e%2e",
        "?",
        "#",
        ":",
        ";",
        "*",
        "file:",
        "mode=rwc",
        "&",
        "'",
        '"',
        "<",
        ">",
        "|",
        "$HOME",
        "-wal",
        ".sqlite",
        "nukeworks.sqlite",
        "/dev/",
        "/proc/self/",
        "/etc/",
        "☢",
        "é",
        "\u202e",
        "\ud800",
        "\udc80",
        "\uffff",
        "\U0001d54f",
    ]
)
PATHS = st.one_of(
    st.text(),
    st.lists(st.one_of(PATH_PIECES, st.text(max_size=8)), max_size=12).map("".join),
    st.text(min_size=4000, max_size=5000, alphabet="a/"),
)
# What a browser can send: no lone surrogates (they cannot be encoded in a form post).
FORM_TEXT = PATHS.map(lambda s: s.encode("utf-8", "replace").decode("utf-8"))


def tree(root: Path) -> set[str]:
    return {os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files}


@FUZZ
@given(raw=PATHS)
def test_fuzz_path_validation_raises_only_refusals(raw, tmp_path):
    before = tree(tmp_path)
    try:
        normalized = normalize_user_path(raw)
    except PathRejected as exc:
        assert str(exc)
    else:
        assert os.path.isabs(normalized)
        assert "\x00" not in normalized
    try:
        selection.check_path(raw)
    except ValidationFailed as exc:
        assert exc.reason
    assert tree(tmp_path) == before


@FUZZ
@given(raw=FORM_TEXT, prefix=st.booleans())
def test_fuzz_select_never_fails_with_a_500(raw, prefix, tmp_path):
    client = Client(raise_request_exception=True)
    typed = f"{tmp_path}/{raw}" if prefix else raw
    before = tree(tmp_path)
    response = client.post("/select-db", {"path": typed})
    assert response.status_code == 400
    assert db_session.SELECTED_PATH not in client.session
    assert tree(tmp_path) - before <= {str(tmp_path / "instance")}


@FUZZ
@given(raw=FORM_TEXT)
def test_fuzz_browse_answers_json_200_or_400(raw, tmp_path):
    before = tree(tmp_path)
    response = Client(raise_request_exception=True).get("/select-db/browse", {"dir": raw})
    assert response.status_code in (200, 400)
    data = response.json()
    assert ("error" in data) == (response.status_code == 400)
    assert tree(tmp_path) == before


@FUZZ
@given(data=st.binary(max_size=200), size=st.integers(min_value=0, max_value=2**40))
def test_fuzz_header_parser(data, size):
    for candidate in (data, SQLITE_MAGIC + data):
        try:
            header = parse_header(candidate, size)
        except ValidationFailed as exc:
            assert exc.reason
        else:
            assert isinstance(header, SqliteHeader)
            assert 512 <= header.page_size <= 65536


@pytest.fixture(scope="module")
def real_header(template_database: Path) -> bytes:
    return template_database.read_bytes()[:100]


@FUZZ
@given(
    body=st.binary(min_size=0, max_size=3 * 4096),
    flips=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 255)), max_size=6),
    keep_header=st.booleans(),
)
def test_fuzz_untrusted_file_validation(body, flips, keep_header, real_header, tmp_path):
    """Random files behind a (mutated) real SQLite header: refusals only, nothing created."""
    header = bytearray(real_header)
    for offset, value in flips:
        header[offset] = value
    folder = tmp_path / "fuzz"
    folder.mkdir(exist_ok=True)
    path = folder / "candidate.sqlite"
    path.write_bytes((bytes(header) if keep_header else b"") + body)
    try:
        info = inspect_database(str(path))
    except ValidationFailed as exc:
        assert exc.reason
    else:
        assert info.state is not None
    assert os.listdir(folder) == ["candidate.sqlite"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)
STATE_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "recent_paths": st.one_of(JSON_VALUES, st.lists(st.one_of(st.text(), JSON_VALUES))),
        "last_browsed_dir": JSON_VALUES,
        "global_default_path": JSON_VALUES,
    },
)


def _is_clean(state: dict) -> bool:
    return (
        set(state) == {"recent_paths", "last_browsed_dir", "global_default_path"}
        and isinstance(state["recent_paths"], list)
        and all(isinstance(p, str) and p for p in state["recent_paths"])
        and isinstance(state["last_browsed_dir"], str)
        and isinstance(state["global_default_path"], str)
    )


@FUZZ
@given(
    text=st.one_of(
        st.text(),
        JSON_VALUES.map(json.dumps),
        STATE_LIKE.map(json.dumps),
        st.text(alphabet="[{", min_size=1000, max_size=100_000),  # deep nesting
    )
)
def test_fuzz_state_file_parser(text):
    state, _clean = selector_cache.parse(text)
    assert _is_clean(state)


@FUZZ
@given(
    content=st.one_of(
        st.binary(max_size=2000), STATE_LIKE.map(lambda d: json.dumps(d).encode("utf-8"))
    )
)
def test_fuzz_state_file_on_disk_is_read_and_rewritten_clean(content):
    path = selector_cache.cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    state = selector_cache.load()
    assert _is_clean(state)
    reread, clean = selector_cache.parse(path.read_text(encoding="utf-8"))
    assert reread == state and clean
