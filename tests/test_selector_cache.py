"""instance/db_selector.json: remembered across requests, atomic, tolerant of corruption."""

from __future__ import annotations

import json
import os
import re
import threading

from django.test import Client

from dbselect import selector_cache
from tests.helpers import select


def test_successful_selection_is_remembered(make_database):
    first, second = make_database(name="One"), make_database(name="Two")
    client = Client()
    select(client, first)
    select(client, second)
    data = json.loads(selector_cache.cache_file().read_text())
    assert set(data) == {"recent_paths", "last_browsed_dir", "global_default_path"}
    assert data["recent_paths"] == [str(second), str(first)]
    assert data["last_browsed_dir"] == str(second.parent)
    assert data["global_default_path"] == str(second)


def test_failed_selection_is_not_remembered(tmp_path):
    select(Client(), tmp_path / "missing.sqlite")
    assert selector_cache.load()["recent_paths"] == []


def test_anonymous_selector_offers_the_global_default_as_last_used(make_database):
    path = make_database(name="Remembered")
    select(Client(), path)
    page = Client().get("/select-db").content.decode()
    assert "Last used" in page
    assert f'value="{path}" checked' in page


def test_recent_paths_are_listed_and_capped(make_database, settings):
    settings.DBSELECT = {**settings.DBSELECT, "RECENT_PATHS_LIMIT": 3}
    paths = [make_database(name=f"R{i}") for i in range(5)]
    client = Client()
    for path in paths:
        select(client, path)
    assert selector_cache.load()["recent_paths"] == [str(p) for p in reversed(paths[-3:])]
    page = Client().get("/select-db").content.decode()
    assert str(paths[-2]) in page


def test_corrupt_file_is_tolerated_and_rewritten(make_database):
    cache = selector_cache.cache_file()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("{not json")
    assert Client().get("/select-db").status_code == 200
    assert json.loads(cache.read_text()) == selector_cache.EMPTY

    cache.write_text(json.dumps({"recent_paths": "oops", "last_browsed_dir": 3, "extra": 1}))
    assert selector_cache.load() == selector_cache.EMPTY
    assert json.loads(cache.read_text()) == selector_cache.EMPTY


def test_concurrent_writers_never_leave_a_broken_file(make_database):
    paths = [str(make_database(name=None)) for _ in range(4)]
    errors: list[BaseException] = []

    def writer(path: str) -> None:
        try:
            for _ in range(25):
                selector_cache.remember_selection(path)
                json.loads(selector_cache.cache_file().read_text())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(selector_cache.load()["recent_paths"]) == sorted(paths)
    leftovers = [p.name for p in selector_cache.cache_file().parent.iterdir() if p.suffix == ".tmp"]
    assert leftovers == []


def test_anyone_can_forget_a_recent_path_and_a_missing_one_is_marked_not_preselected(
    make_database,
):
    kept = make_database(name="Kept")
    gone = make_database(name="Gone")
    client = Client()
    select(client, gone)
    select(client, kept)
    os.remove(gone)
    page = client.get("/select-db").content.decode()
    radio = re.search(
        rf'<input type="radio" name="choice" value="{re.escape(str(gone))}"[^>]*>', page
    )
    assert radio is not None and "checked" not in radio.group(0)
    entry = page[radio.end() : page.index("</label>", radio.end())]
    assert "missing" in entry
    forgotten = client.post("/select-db/forget", {"path": str(gone)}, follow=True)
    assert forgotten.status_code == 200
    assert f"Removed {gone} from the recent databases." in forgotten.content.decode()
    assert str(gone) not in selector_cache.load()["recent_paths"]
    assert str(kept) in selector_cache.load()["recent_paths"]
    assert client.get("/select-db/forget").status_code == 405  # a state change is a POST
