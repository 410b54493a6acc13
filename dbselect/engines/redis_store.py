"""The engine store of several app servers: the same interface as `EngineStore`, in Redis.

`workers.get_store()` returns this one when REDIS_URL is set, so that a dispose on server A
closes the engine on server B (at B's next request or janitor tick, as the workers of one
machine do with the file store), and the engines page lists the workers of every server.

Keys (`dbselect.redis_state.key`, under NUKEWORKS_REDIS_PREFIX):

- `engines:seq`: the sequence number of the latest dispose request (INCR, never lowered);
- `engines:disposals`: a sorted set of the requests, scored by sequence number, each member
  the JSON `{"seq", "path", "at", "by"}`; trimmed to a day and to MAX_DISPOSALS entries;
- `engines:refresh`: the "please publish your engine table" counter (INCR);
- `engines:workers`: a sorted set of worker ids scored by when each last published, and
  `engines:worker:<id>` a hash per worker (worker, host, pid, reported, report) that expires
  REPORT_TTL seconds after its last publication (a killed server's workers leave no trace).

A dispose request is recorded by one Lua script (the INCR, the ZADD and the trimming), so a
sequence number readable at `engines:seq` always has its paths readable too — the ordering
the file store gets from committing before raising its shared counter.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import redis

from dbselect import redis_state
from dbselect.engines.workers import KEEP_DISPOSALS_SECONDS, StoreUnavailable, WorkerReport

# Dispose requests kept at most (besides the day's limit): workers a day behind re-read all.
MAX_DISPOSALS = 10_000
# Seconds a worker's table outlives its last publication (workers publish every
# ENGINE_HEARTBEAT seconds, 5 by default; the engines page prunes older ones sooner).
REPORT_TTL = 600

P = ParamSpec("P")
R = TypeVar("R")

# KEYS: seq, disposals. ARGV: now, cutoff, max entries, by, paths…
_RECORD = """
local seq = redis.call('INCR', KEYS[1])
local now = tonumber(ARGV[1])
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[2], seq,
    cjson.encode({seq = seq, path = ARGV[i], at = now, by = ARGV[4]}))
end
local cutoff = tonumber(ARGV[2])
local oldest = redis.call('ZRANGE', KEYS[2], 0, 99)
for _, member in ipairs(oldest) do
  local entry = cjson.decode(member)
  if entry.at >= cutoff or entry.seq >= seq then break end
  redis.call('ZREM', KEYS[2], member)
end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[3]) + 1))
return seq
"""


def _store_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Raise StoreUnavailable (an OSError, as the file store's failures) for Redis errors."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    return wrapper


class RedisEngineStore:
    """The shared dispose counter and engine tables of every server, in Redis."""

    # A Redis without persistence forgets the counter when it restarts (workers' feeds then
    # re-read the store from the start: dbselect.engines.workers.DisposeFeed).
    resets = True

    def __init__(self, client: redis.Redis | None = None) -> None:
        self.client = client if client is not None else redis_state.client()
        self.seq_key = redis_state.key("engines", "seq")
        self.disposals_key = redis_state.key("engines", "disposals")
        self.refresh_key = redis_state.key("engines", "refresh")
        self.workers_key = redis_state.key("engines", "workers")
        self._record = self.client.register_script(_RECORD)

    def _worker_key(self, worker: str) -> str:
        return redis_state.key("engines", "worker", worker)

    # -- the counters -----------------------------------------------------------------------

    @_store_errors
    def sequence(self) -> int:
        """Return the number of the latest dispose request (one GET)."""
        return int(self.client.get(self.seq_key) or 0)

    @_store_errors
    def refresh_counter(self) -> int:
        """Return the "please publish your engine table" counter."""
        return int(self.client.get(self.refresh_key) or 0)

    @_store_errors
    def request_refresh(self) -> int:
        """Ask every worker of every server to publish its engine table; return the counter."""
        return int(self.client.incr(self.refresh_key))

    # -- dispose requests -------------------------------------------------------------------

    @_store_errors
    def record_disposals(self, paths: list[str], by: str = "") -> int:
        """Record a dispose request for `paths`; return its sequence number."""
        now = time.time()
        args = [now, now - KEEP_DISPOSALS_SECONDS, MAX_DISPOSALS, by, *paths]
        return int(self._record(keys=[self.seq_key, self.disposals_key], args=args))

    @_store_errors
    def disposals_after(
        self, seq: int, *, skip: frozenset[int] = frozenset()
    ) -> tuple[int, list[str]]:
        """Return (highest sequence number, paths) of the dispose requests after `seq`;
        requests numbered in `skip` are counted but their paths not returned."""
        members = self.client.zrangebyscore(self.disposals_key, f"({seq}", "+inf")
        if not members:
            return seq, []
        highest = seq
        paths: list[str] = []
        for member in members:
            try:
                entry = json.loads(member)
                number, path = int(entry["seq"]), str(entry["path"])
            except (ValueError, KeyError, TypeError):
                continue  # not written by record_disposals: nothing to apply
            highest = max(highest, number)
            if number not in skip:
                paths.append(path)
        return highest, list(dict.fromkeys(paths))

    # -- the workers' tables ----------------------------------------------------------------

    @_store_errors
    def publish(self, worker: str, host: str, pid: int, data: dict[str, Any]) -> None:
        """Replace the table worker `worker` publishes."""
        now = time.time()
        key = self._worker_key(worker)
        fields = {
            "worker": worker,
            "host": host,
            "pid": pid,
            "reported": repr(now),
            "report": json.dumps(data),
        }
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, REPORT_TTL)
            pipe.zadd(self.workers_key, {worker: now})
            pipe.execute()

    @_store_errors
    def remove_worker(self, worker: str) -> None:
        """Forget a worker's table (it is exiting)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self._worker_key(worker))
            pipe.zrem(self.workers_key, worker)
            pipe.execute()

    @_store_errors
    def reports(self, *, newer_than: float = 0.0) -> list[WorkerReport]:
        """Return the tables published since `newer_than` (seconds since the epoch)."""
        ids = self.client.zrangebyscore(self.workers_key, newer_than, "+inf")
        if not ids:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for worker in ids:
                pipe.hgetall(self._worker_key(worker.decode()))
            tables = pipe.execute()
        found: list[WorkerReport] = []
        expired: list[bytes] = []
        for worker, table in zip(ids, tables, strict=True):
            if not table:
                expired.append(worker)
                continue
            try:
                found.append(
                    WorkerReport(
                        worker=table[b"worker"].decode(),
                        host=table[b"host"].decode(),
                        pid=int(table[b"pid"]),
                        reported=float(table[b"reported"]),
                        data=json.loads(table[b"report"]),
                    )
                )
            except (KeyError, ValueError, UnicodeDecodeError):
                expired.append(worker)
        if expired:
            self.client.zrem(self.workers_key, *expired)
        return sorted(found, key=lambda r: (r.host, r.pid))

    @_store_errors
    def prune(self, older_than: float) -> None:
        """Delete the tables of workers that stopped publishing (crashed, killed, gone)."""
        stale = self.client.zrangebyscore(self.workers_key, "-inf", f"({older_than}")
        if not stale:
            return
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(*(self._worker_key(w.decode()) for w in stale))
            pipe.zrem(self.workers_key, *stale)
            pipe.execute()
