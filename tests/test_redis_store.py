"""The shared state's Redis side, in one process against a real Redis server.

What the two-server tests (test_redis_shared_state.py) show end to end, here piece by piece:
the engine store's dispose feed (ordering, a worker's own requests, trimming, a Redis that
forgot everything, a Redis that is down), the worker tables, the selector's memory under
concurrent writers, and a cache's clear() that leaves the other state alone.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading

import pytest
import redis
from django.core.cache import caches
from django.test import RequestFactory

from dbselect import redis_state, selector_cache
from dbselect.engines import redis_store, workers
from dbselect.engines.redis_store import RedisEngineStore
from nukeworks.deployment.redis_cache import PrefixedRedisCache
from tests.live import free_port


@pytest.fixture
def shared(settings, redis_server) -> redis.Redis:
    """REDIS_URL on the test's Redis, under a key prefix of this test's own."""
    settings.REDIS_URL = redis_server.extra["url"]
    settings.NUKEWORKS_REDIS_PREFIX = prefix = f"t{secrets.token_hex(4)}"
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def test_get_store_is_redis_with_redis_url(shared):
    assert isinstance(workers.get_store(), RedisEngineStore)


def test_get_store_is_the_folder_without(settings, tmp_path):
    settings.DBSELECT = {**settings.DBSELECT, "ENGINE_STORE_DIR": tmp_path / "engines"}
    assert isinstance(workers.get_store(), workers.EngineStore)


def test_dispose_requests_come_back_in_order_with_their_numbers(shared):
    store = RedisEngineStore()
    assert store.sequence() == 0
    first = store.record_disposals(["/a.sqlite", "/b.sqlite"], by="boss")
    second = store.record_disposals(["/a.sqlite"])
    assert (first, second) == (1, 2)
    assert store.sequence() == 2
    assert store.disposals_after(0) == (2, ["/a.sqlite", "/b.sqlite"])
    assert store.disposals_after(1) == (2, ["/a.sqlite"])
    assert store.disposals_after(2) == (2, [])
    # A request numbered in `skip` counts, its paths do not come back.
    assert store.disposals_after(1, skip=frozenset({2})) == (2, [])


def test_a_worker_never_applies_its_own_dispose_again(shared):
    store = RedisEngineStore()
    mine, theirs = workers.DisposeFeed(), workers.DisposeFeed()
    assert mine.take() == [] and theirs.take() == []
    seq = store.record_disposals(["/plant.sqlite"])
    mine.note_own(seq)
    assert theirs.take() == ["/plant.sqlite"]
    assert mine.take() == []
    # Later requests of other workers still reach it.
    store.record_disposals(["/other.sqlite"])
    assert mine.take() == ["/other.sqlite"]
    assert theirs.take() == ["/other.sqlite"]


def test_requests_made_before_a_worker_first_looked_are_not_applied(shared):
    store = RedisEngineStore()
    store.record_disposals(["/old.sqlite"])
    feed = workers.DisposeFeed()
    assert feed.take() == []
    store.record_disposals(["/new.sqlite"])
    assert feed.take() == ["/new.sqlite"]


def test_a_redis_that_forgot_everything_is_read_from_the_start(shared, caplog):
    store = RedisEngineStore()
    feed = workers.DisposeFeed()
    feed.take()
    for n in range(3):
        store.record_disposals([f"/before-{n}.sqlite"])
    assert len(feed.take()) == 3
    # Redis restarted without its data: the counter starts again from 0.
    shared.delete(store.seq_key, store.disposals_key)
    store.record_disposals(["/after.sqlite"])
    with caplog.at_level(logging.WARNING, logger="nukeworks.dbselect"):
        assert feed.take() == ["/after.sqlite"]
    assert "went back from 3 to 1" in caplog.text


def test_old_dispose_requests_are_trimmed(shared, monkeypatch):
    monkeypatch.setattr(redis_store, "MAX_DISPOSALS", 5)
    store = RedisEngineStore()
    for n in range(12):
        store.record_disposals([f"/{n}.sqlite"])
    assert shared.zcard(store.disposals_key) == 5
    assert store.disposals_after(0) == (12, [f"/{n}.sqlite" for n in range(7, 12)])


def test_dispose_requests_older_than_a_day_are_trimmed(shared, monkeypatch):
    store = RedisEngineStore()
    now = 1_000_000.0
    monkeypatch.setattr(redis_store.time, "time", lambda: now)
    store.record_disposals(["/old.sqlite"])
    now += workers.KEEP_DISPOSALS_SECONDS + 1
    store.record_disposals(["/new.sqlite"])
    assert store.disposals_after(0) == (2, ["/new.sqlite"])


def test_a_redis_that_is_down_keeps_requests_working(settings, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    feed = workers.DisposeFeed()
    with caplog.at_level(logging.ERROR, logger="nukeworks.dbselect"):
        assert feed.take() == []
        assert feed.take() == []
    # Said once, not on every request.
    assert caplog.text.count("engine store") == 1
    with pytest.raises(workers.StoreUnavailable):
        workers.get_store().record_disposals(["/x.sqlite"])


def test_worker_tables_carry_their_server_and_expire(shared):
    store = RedisEngineStore()
    store.publish("alpha:10", "alpha", 10, {"engines": [], "pid": 10})
    store.publish("beta:10", "beta", 10, {"engines": [], "pid": 10})
    reports = store.reports()
    assert [(r.worker, r.host, r.pid) for r in reports] == [
        ("alpha:10", "alpha", 10),
        ("beta:10", "beta", 10),
    ]
    assert reports[0].data == {"engines": [], "pid": 10}
    assert 0 < shared.ttl(store._worker_key("alpha:10")) <= redis_store.REPORT_TTL
    # A table that expired (its server was killed) is no longer listed.
    shared.delete(store._worker_key("beta:10"))
    assert [r.worker for r in store.reports()] == ["alpha:10"]
    assert shared.zrange(store.workers_key, 0, -1) == [b"alpha:10"]
    store.remove_worker("alpha:10")
    assert store.reports() == []


def test_prune_forgets_workers_that_stopped_publishing(shared):
    store = RedisEngineStore()
    store.publish("alpha:1", "alpha", 1, {})
    newer_than = float(shared.zscore(store.workers_key, "alpha:1")) + 0.001
    store.publish("alpha:2", "alpha", 2, {})
    shared.zadd(store.workers_key, {"alpha:2": newer_than + 1})
    assert [r.worker for r in store.reports(newer_than=newer_than)] == ["alpha:2"]
    store.prune(newer_than)
    assert [r.worker for r in store.reports()] == ["alpha:2"]
    assert not shared.exists(store._worker_key("alpha:1"))


def test_refresh_counter_is_shared(shared):
    one, other = RedisEngineStore(), RedisEngineStore()
    assert one.refresh_counter() == 0
    assert other.request_refresh() == 1
    assert one.refresh_counter() == 1


def test_the_worker_id_names_the_server(settings):
    settings.NUKEWORKS_SERVER_NAME = "alpha"
    assert workers.worker_id().startswith("alpha:")
    assert workers.report()["host"] == "alpha"


# -- the selector's memory ------------------------------------------------------------------


def test_selections_are_remembered_in_redis_not_in_the_file(shared):
    selector_cache.remember_selection("/srv/a/nukeworks.sqlite")
    state = selector_cache.remember_selection("/srv/b/nukeworks.sqlite")
    assert state == {
        "recent_paths": ["/srv/b/nukeworks.sqlite", "/srv/a/nukeworks.sqlite"],
        "last_browsed_dir": "/srv/b",
        "global_default_path": "/srv/b/nukeworks.sqlite",
    }
    assert selector_cache.load() == state
    assert json.loads(shared.get(redis_state.key("selector"))) == state
    assert not selector_cache.cache_file().exists()


def test_concurrent_selections_on_several_servers_are_all_kept(shared, settings):
    settings.DBSELECT = {**settings.DBSELECT, "RECENT_PATHS_LIMIT": 100}
    paths = [f"/srv/{n}/nukeworks.sqlite" for n in range(40)]
    barrier = threading.Barrier(8)

    def select(chunk: list[str]) -> None:
        barrier.wait()
        for path in chunk:
            selector_cache.remember_selection(path)

    threads = [threading.Thread(target=select, args=(paths[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(selector_cache.load()["recent_paths"]) == sorted(paths)


def test_forget_removes_a_path_from_redis(shared):
    selector_cache.remember_selection("/srv/keep/nukeworks.sqlite")
    selector_cache.remember_selection("/srv/gone/nukeworks.sqlite")
    request = RequestFactory().get("/")
    request.session = {}
    assert selector_cache.forget(request, "/srv/gone/nukeworks.sqlite")
    assert not selector_cache.forget(request, "/srv/never/nukeworks.sqlite")
    state = selector_cache.load()
    assert state["recent_paths"] == ["/srv/keep/nukeworks.sqlite"]
    assert state["global_default_path"] == ""


def test_a_corrupt_value_in_redis_is_read_as_empty_and_rewritten(shared):
    shared.set(redis_state.key("selector"), b'{"recent_paths": "nope", "extra": 1}')
    assert selector_cache.load() == selector_cache.EMPTY
    assert json.loads(shared.get(redis_state.key("selector"))) == selector_cache.EMPTY


# -- caches ---------------------------------------------------------------------------------


def test_clearing_a_cache_leaves_sessions_queue_and_feed_alone(shared, settings):
    url = settings.REDIS_URL
    prefix = settings.NUKEWORKS_REDIS_PREFIX
    settings.CACHES = {
        **settings.CACHES,
        "shared": {
            "BACKEND": "nukeworks.deployment.redis_cache.PrefixedRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"{prefix}:cache",
        },
        "shared_sessions": {
            "BACKEND": "nukeworks.deployment.redis_cache.PrefixedRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"{prefix}:session",
        },
    }
    cache, sessions = caches["shared"], caches["shared_sessions"]
    assert isinstance(cache, PrefixedRedisCache)
    for n in range(1200):  # more than one SCAN/UNLINK batch
        cache.set(f"k{n}", n)
    cache.set("v", "old", version=2)
    sessions.set("abc", {"selected": "/x"})
    RedisEngineStore().record_disposals(["/x.sqlite"])
    shared.set("someone-else:key", b"1")

    cache.clear()

    assert cache.get("k1") is None and cache.get("v", version=2) is None
    assert sessions.get("abc") == {"selected": "/x"}
    assert RedisEngineStore().sequence() == 1
    assert shared.get("someone-else:key") == b"1"
    shared.delete("someone-else:key")


def test_sessions_in_redis_are_counted_per_database(shared, settings):
    from django.contrib.sessions.backends.cache import SessionStore

    from dbselect.engines.session_counts import count_sessions
    from dbselect.session import SELECTED_PATH

    settings.CACHES = {
        **settings.CACHES,
        "sessions": {
            "BACKEND": "nukeworks.deployment.redis_cache.PrefixedRedisCache",
            "LOCATION": settings.REDIS_URL,
            "KEY_PREFIX": f"{settings.NUKEWORKS_REDIS_PREFIX}:session",
        },
    }
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    settings.SESSION_CACHE_ALIAS = "sessions"
    for path in ("/srv/a.sqlite", "/srv/a.sqlite", "/srv/b.sqlite", None):
        session = SessionStore()
        if path:
            session[SELECTED_PATH] = path
        session["other"] = 1
        session.save()
    counts = count_sessions()
    assert counts.counts == {"/srv/a.sqlite": 2, "/srv/b.sqlite": 1}
    assert counts.scanned == 4


def test_metrics_count_the_workers_of_this_server_only(shared, settings):
    from metrics import collectors

    settings.NUKEWORKS_SERVER_NAME = "alpha"
    store = RedisEngineStore()
    store.publish("alpha:1", "alpha", 1, {"engines": [], "pid": 1})
    store.publish("beta:1", "beta", 1, {"engines": [], "pid": 1})
    tables = collectors._tables()
    assert [t["pid"] for t in tables] == [os.getpid(), 1]
    assert tables[0]["host"] == "alpha"
