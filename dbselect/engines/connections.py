"""Per-thread bookkeeping of the connections this process opens, for dispose and fd bounds.

Django keeps one connection object per alias *per thread*, and only the owning thread closes
it (at the end of its requests). Disposing an engine must also reach idle threads that hold a
persistent connection (CONN_MAX_AGE > 0) and may not serve a request for a long time. So:

- every connection is stamped, when it connects, with its alias's dispose *generation*; a
  thread closes a connection whose generation is stale before using the alias again
  (`mark_used`) and when its request ends (`on_request_finished`);
- a thread serving a request holds its own `lock`; another thread (the dispose itself, or the
  engine janitor) may close a server thread's connections only while it holds that lock, i.e.
  only while the owner is between requests and cannot touch them;
- a thread serving a request never holds more than MAX_CONNECTIONS_PER_THREAD connections,
  at any moment: before it opens one more (the runtime backend calls `make_room`), it closes
  its least recently used idle ones. Closing only at request end was not enough: Django sends
  request_finished when the server closes the response, i.e. after the client already has
  every byte, so the thread briefly held limit + 1 files while its client had moved on;
- when a request ends, a thread keeps at most MAX_CONNECTIONS_PER_THREAD persistent
  connections (least recently used closed first; it catches what `make_room` had to leave
  open inside a transaction), so open file descriptors stay below threads x recently used
  databases, and drops the per-thread objects of closed ones.

Django's own request_started/request_finished receivers `close_old_connections` and
`reset_queries` visit *every* registered alias through an asgiref Local: measured by
`bench/bench_request_receivers.py`, 17 us per call with 10 aliases, 140 us with 100 and
1.47 ms with 1,000, three calls per request. `close_old_connections_here` and
`reset_queries_here` do the same work over the connections this thread actually opened (every
connection announces itself through `connection_created`): about 2 us whatever the count.
`install_receivers` swaps them in, in one place.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from dbselect.conf import setting
from dbselect.state import get_active_alias

GENERATION_ATTR = "_nukeworks_dispose_generation"

# alias -> dispose generation; only ever incremented, under _lock.
_generations: dict[str, int] = {}
_lock = threading.Lock()
_local = threading.local()
_states: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()
_states_lock = threading.Lock()
_server_started_callbacks: list[Any] = []


class ThreadConnections:
    """The connections one thread has opened, and whether it is serving a request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_request = False
        # Set for threads of a real server (not the test client): only their connections
        # may be closed by another thread, because only they hold `lock` while working.
        self.server = False
        # The current request comes from Django's test client (which sends request_finished
        # with sender=None, so this is remembered from request_started).
        self.test_client = False
        self.open: dict[str, BaseDatabaseWrapper] = {}
        self.used: dict[str, float] = {}
        self.thread_name = threading.current_thread().name


def current() -> ThreadConnections:
    """Return the bookkeeping of the calling thread."""
    state = getattr(_local, "state", None)
    if state is None:
        state = ThreadConnections()
        _local.state = state
        with _states_lock:
            _states.add(state)
    return state


def generation(alias: str) -> int:
    """Return the dispose generation of `alias`."""
    return _generations.get(alias, 0)


def bump(alias: str) -> int:
    """Invalidate every existing connection to `alias`; return the new generation."""
    with _lock:
        value = _generations.get(alias, 0) + 1
        _generations[alias] = value
    return value


def _stale(alias: str, wrapper: BaseDatabaseWrapper) -> bool:
    return getattr(wrapper, GENERATION_ATTR, 0) != _generations.get(alias, 0)


def close_quietly(wrapper: BaseDatabaseWrapper) -> bool:
    """Close `wrapper` from any thread unless it is inside a transaction; return True if closed."""
    if wrapper.connection is None:
        return True
    if wrapper.in_atomic_block:
        return False
    wrapper.inc_thread_sharing()
    try:
        wrapper.close()
    finally:
        wrapper.dec_thread_sharing()
    return wrapper.connection is None


def _forget(state: ThreadConnections, alias: str, wrapper: BaseDatabaseWrapper | None) -> None:
    """Drop a closed connection's per-thread objects (memory stays flat with many aliases)."""
    state.open.pop(alias, None)
    state.used.pop(alias, None)
    # Only the owner thread may touch its own connection registry; it is the caller here. A
    # wrapper Django built meanwhile is unconnected (a connected one would be in state.open):
    # dropping it only makes the next use build it again from the current settings.
    with contextlib.suppress(AttributeError):
        del connections[alias]


def on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """Stamp a new connection with its alias's generation and remember it for this thread."""
    state = current()
    setattr(connection, GENERATION_ATTR, _generations.get(connection.alias, 0))
    state.open[connection.alias] = connection
    state.used[connection.alias] = time.monotonic()


def mark_used(alias: str) -> None:
    """Note that this thread is about to use `alias`; close its connection if disposed since."""
    state = current()
    state.used[alias] = time.monotonic()
    wrapper = state.open.get(alias)
    if wrapper is not None and _stale(alias, wrapper):
        close_quietly(wrapper)


def make_room(alias: str) -> None:
    """Before this thread connects to `alias`: close its least recently used idle connections.

    Called by the runtime backend just before it opens a file, so that a thread serving a
    request holds at most MAX_CONNECTIONS_PER_THREAD connections at every moment, the new one
    included. Never closed: the alias being opened, the request's own database, and any
    connection inside a transaction or shared with another thread (its user would lose it
    mid-work). The closed wrappers stay in the registry until `tidy` forgets them at request
    end, so a caller holding a reference to one simply reconnects.
    """
    state = current()
    # Like `tidy`: the test client keeps connections between requests, and outside a request
    # (management commands, tests working on files directly) nothing promised a bound.
    if not state.in_request or state.test_client:
        return
    limit = max(int(setting("MAX_CONNECTIONS_PER_THREAD")), 1)
    others = [a for a, w in state.open.items() if a != alias and w.connection is not None]
    surplus = len(others) + 1 - limit
    if surplus <= 0:
        return
    active = get_active_alias()
    for other in sorted(others, key=lambda a: state.used.get(a, 0.0)):
        if surplus <= 0:
            break
        wrapper = state.open[other]
        if other == active or wrapper.allow_thread_sharing or not wrapper.autocommit:
            continue
        if close_quietly(wrapper):
            surplus -= 1


def on_request_started(sender: Any, **kwargs: Any) -> None:
    """Mark the thread busy: from now on no other thread closes its connections."""
    state = current()
    if not state.in_request:
        state.lock.acquire()
        state.in_request = True
    state.test_client = _test_client(sender)
    if not state.server and not state.test_client:
        state.server = True
        for callback in _server_started_callbacks:
            callback()


def _test_client(sender: Any) -> bool:
    """Return True for Django's test client, which keeps connections open across requests."""
    return getattr(sender, "__module__", "").startswith("django.test")


def on_request_finished(sender: Any, **kwargs: Any) -> None:
    """Close disposed and surplus connections of this thread, then mark it idle."""
    state = current()
    # Like Django's own handling, the test client keeps connections between its requests.
    limit = 10**9 if state.test_client else int(setting("MAX_CONNECTIONS_PER_THREAD"))
    try:
        tidy(state, limit)
    finally:
        if state.in_request:
            state.in_request = False
            state.lock.release()


def tidy(state: ThreadConnections, limit: int) -> None:
    """In the owner thread: forget closed connections, close disposed and least recently used."""
    for alias, wrapper in list(state.open.items()):
        if wrapper.connection is not None and _stale(alias, wrapper):
            close_quietly(wrapper)
        if wrapper.connection is None:
            _forget(state, alias, wrapper)
    surplus = len(state.open) - max(limit, 0)
    if surplus > 0:
        by_age = sorted(state.open, key=lambda a: state.used.get(a, 0.0))
        for alias in by_age[:surplus]:
            wrapper = state.open[alias]
            if close_quietly(wrapper):
                _forget(state, alias, wrapper)


def close_everywhere(alias: str) -> int:
    """Close this thread's and every idle server thread's connection to `alias`.

    Return how many connections remain open (their threads are busy and close them when
    their request ends, or before they use the alias again).
    """
    remaining = 0
    me = current()
    mine = me.open.get(alias)
    if mine is None or close_quietly(mine):
        # This thread's object goes, connected or not: the next use builds it from the
        # current settings.
        _forget(me, alias, mine)
    else:
        remaining += 1
    for state in _all_states():
        wrapper = state.open.get(alias)
        if state is me or wrapper is None or wrapper.connection is None:
            continue
        if state.server and state.lock.acquire(blocking=False):
            try:
                if not close_quietly(wrapper):
                    remaining += 1
            finally:
                state.lock.release()
        else:
            remaining += 1
    return remaining


def sweep_idle() -> int:
    """Close the disposed connections of idle server threads; return how many were closed."""
    closed = 0
    for state in _all_states():
        if not state.server or not state.lock.acquire(blocking=False):
            continue
        try:
            for alias, wrapper in list(state.open.items()):
                if wrapper.connection is not None and _stale(alias, wrapper):
                    closed += close_quietly(wrapper)
        finally:
            state.lock.release()
    return closed


def open_connections() -> dict[str, int]:
    """Return alias -> number of threads of this process with an open connection to it."""
    counts: dict[str, int] = {}
    for state in _all_states():
        for alias, wrapper in dict(state.open).items():
            if wrapper.connection is not None:
                counts[alias] = counts.get(alias, 0) + 1
    return counts


def _all_states() -> list[ThreadConnections]:
    with _states_lock:
        return list(_states)


def on_server_started(callback: Any) -> None:
    """Call `callback` the first time each thread serves a request of a real server."""
    _server_started_callbacks.append(callback)


def close_old_connections_here(sender: Any = None, **kwargs: Any) -> None:
    """Django's close_old_connections(), over this thread's own connections only."""
    if _test_client(sender) or current().test_client:
        return  # Django's test client disconnects close_old_connections for its requests
    for wrapper in list(current().open.values()):
        wrapper.close_if_unusable_or_obsolete()


def reset_queries_here(**kwargs: Any) -> None:
    """Django's reset_queries(), over this thread's own connections only."""
    for wrapper in list(current().open.values()):
        wrapper.queries_log.clear()


def install_receivers() -> int:
    """Connect the bookkeeping to Django's signals, in place of Django's O(aliases) receivers.

    Our request_started receiver runs *before* the close-old-connections step: from that
    moment the thread holds its lock, so the janitor never closes a connection that is being
    checked in the same thread at the same time. Django's `close_old_connections` and
    `reset_queries` are disconnected (public Signal API) because they cost O(registered
    aliases) per call (module docstring); ours do the same work over this thread's own
    connections. Return how many of Django's receivers were disconnected (3 at start-up;
    tests/test_django_contract.py fails loudly if a Django upgrade renames them).
    """
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections, reset_queries
    from django.db.backends.signals import connection_created

    connection_created.connect(on_connection_created, dispatch_uid="nw-tracking-created")
    removed = sum(
        (
            request_started.disconnect(reset_queries),
            request_started.disconnect(close_old_connections),
            request_finished.disconnect(close_old_connections),
        )
    )
    request_started.connect(on_request_started, dispatch_uid="nw-tracking-started")
    request_started.connect(reset_queries_here, dispatch_uid="nw-reset-queries")
    request_started.connect(close_old_connections_here, dispatch_uid="nw-close-old")
    request_finished.connect(close_old_connections_here, dispatch_uid="nw-close-old")
    request_finished.connect(on_request_finished, dispatch_uid="nw-tracking-finished")
    global django_receivers_removed
    django_receivers_removed += removed
    return removed


# How many of Django's per-alias receivers install_receivers() disconnected in this process.
django_receivers_removed = 0
