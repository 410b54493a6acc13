"""Logs: a request id on every line and in the X-Request-ID header; JSON lines on request.

The JSON test runs the shipped gunicorn configuration with NUKEWORKS_LOG_FORMAT=json and reads
everything the server wrote: gunicorn's own lines, its access lines, the application's and the
audit lines must each be one JSON object, and a request's lines carry the id its response had.
"""

from __future__ import annotations

import io
import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest
from django.test import Client

from nukeworks.deployment import logs
from tests.live import GunicornServer

HEX_ID = re.compile(r"[0-9a-f]{32}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class _Session:
    """A cookie-keeping client that shows each response's headers and never follows redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def call(
        self, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str]]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as response:
                response.read()
                return response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            exc.read()
            return exc.code, dict(exc.headers)

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name)


@pytest.fixture
def json_server(tmp_path, make_database):
    root = tmp_path / "server"
    folder = root / "databases" / "plant"
    folder.mkdir(parents=True)
    database = make_database(name="Plant", path=folder / "nukeworks.sqlite")
    server = GunicornServer(
        root,
        workers=1,
        env={"NUKEWORKS_LOG_FORMAT": "json", "NUKEWORKS_ACCESS_LOG": "-", "LOG_LEVEL": "INFO"},
    ).start()
    try:
        yield server, database
    finally:
        server.stop()


def _lines(server: GunicornServer) -> list[dict]:
    text = server.log.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}\n--- the log ---\n{text[-3000:]}")
    return parsed


def test_json_lines_carry_the_request_id_of_the_response(json_server):
    server, database = json_server
    client = _Session(server.base)

    # An incoming sane id (a proxy's) is kept and sent back.
    status, headers = client.call("/healthz", headers={"X-Request-ID": "lb-probe-42"})
    assert (status, headers["X-Request-ID"]) == (200, "lb-probe-42")
    # An insane one is replaced by a fresh id.
    status, headers = client.call("/healthz", headers={"X-Request-ID": "bad id " + "x" * 300})
    assert status == 200 and HEX_ID.fullmatch(headers["X-Request-ID"])

    # Selecting a database: an audit line and the selector's own line, within one request.
    status, headers = client.call("/select-db")
    assert status == 200
    status, headers = client.call(
        "/select-db",
        {"path": str(database), "csrfmiddlewaretoken": client.cookie("csrftoken")},
    )
    assert status == 302
    select_id = headers["X-Request-ID"]
    assert HEX_ID.fullmatch(select_id)
    server.stop()  # everything written and closed

    lines = _lines(server)
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= set(line), line

    audit = [line for line in lines if line["logger"] == "nukeworks.audit"]
    assert len(audit) == 1, audit
    assert audit[0]["request_id"] == select_id
    assert audit[0]["audit"]["action"] == "database.select"
    assert audit[0]["audit"]["target"] == str(database)
    selected = [line for line in lines if line["message"].startswith("session selected database")]
    assert [line["request_id"] for line in selected] == [select_id]

    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    by_id = {line["request_id"]: line for line in access}
    assert by_id["lb-probe-42"]["path"] == "/healthz"
    assert by_id["lb-probe-42"]["status"] == 200
    assert by_id[select_id]["method"] == "POST"
    assert by_id[select_id]["status"] == 302
    # One line per request (the server's start-up probes included), each with its own id.
    assert len(by_id) == len(access) >= 4

    # gunicorn's own lines (start, workers, stop) are JSON too, outside any request.
    own = [line for line in lines if line["logger"] == "gunicorn.error"]
    assert any("Booting worker" in line["message"] for line in own)
    assert all(line["request_id"] is None for line in own)


def test_plain_lines_carry_the_request_id(settings):
    """Development's human-readable lines: `time LEVEL logger [request id] message`."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.PlainFormatter())
    logger = logging.getLogger("nukeworks")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        response = Client().post(
            "/select-db", {"path": "/no/such/file.sqlite"}, HTTP_X_REQUEST_ID="req-7"
        )
        logging.getLogger("nukeworks.test").info("outside any request")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert response["X-Request-ID"] == "req-7"
    lines = stream.getvalue().splitlines()
    # The selector's line about the refused path, then the line outside any request.
    assert len(lines) >= 2, lines
    assert all(" INFO nukeworks.dbselect [req-7] " in line for line in lines[:-1])
    assert lines[-1].endswith(" INFO nukeworks.test [-] outside any request")


def test_every_response_has_a_request_id():
    client = Client()
    ids = {client.get(path)["X-Request-ID"] for path in ("/healthz", "/companies/", "/nowhere")}
    assert len(ids) == 3 and all(HEX_ID.fullmatch(i) for i in ids)


def test_an_unknown_log_format_is_refused():
    with pytest.raises(Exception, match="NUKEWORKS_LOG_FORMAT is 'xml'"):
        logs.logging_config("xml")
