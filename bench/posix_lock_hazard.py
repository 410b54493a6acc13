"""The POSIX-lock hazard, reproduced with plain sqlite3 (no Django, no NukeWorks code).

On Linux, closing *any* file descriptor of a file releases every POSIX advisory lock the
process holds on that file, SQLite's included (https://sqlite.org/howtocorrupt.html, 2.2).
This experiment runs two processes, each with writer threads (one by default) inserting rows
into one WAL-mode file, a new connection per write as Django opens one per request, and
remembering every insert whose COMMIT returned (an "acknowledged" write).
With `--stray`, one more thread per process does what NukeWorks' request path once did:
`os.open()` the database file, read its 100-byte header, `os.close()`. Afterwards it counts
the acknowledged rows missing from the file and runs `PRAGMA integrity_check`.

    python bench/posix_lock_hazard.py --seconds 10            # both variants, side by side
    python bench/posix_lock_hazard.py --seconds 10 --stray    # only the hazardous one

Seen on this project's 2-core machine (20 s, one writer per process): without the stray
reader 3,097 acknowledged and 0 lost, integrity ok; with it, 118 of 2,047 acknowledged rows
lost, rows missing from the unique index, and a writer got "disk I/O error". With three
writers per process the hazard rarely shows (a closing connection is seldom alone in its
process, so it seldom tries to take the file over). `tests/test_raw_descriptors.py` keeps
NukeWorks' own request path free of such descriptors.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

# One writer per process, as a gthread worker often has a single request writing: a closing
# connection that is alone in its process is the one that tries for the EXCLUSIVE lock.
WRITERS_PER_PROCESS = 1


def _writer(path: str, deadline: float, tag: str, acknowledged: list[str], reconnect: int) -> None:
    # A new connection every `reconnect` writes, as Django's threads open and close theirs
    # (CONN_MAX_AGE, dispose, idle cleanup): a closing connection that gets an EXCLUSIVE lock
    # believes it is the last one in every process, checkpoints and deletes the WAL, which is
    # where a lock released behind SQLite's back turns into lost rows.
    n = 0
    conn = None
    while time.monotonic() < deadline:
        key = f"{tag}-{n}"
        if conn is None or n % reconnect == 0:
            if conn is not None:
                conn.close()
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA synchronous=FULL")
        n += 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t(key, pad) VALUES (?, randomblob(200))", (key,))
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.rollback()
            continue  # not acknowledged: the writer saw the failure
        acknowledged.append(key)
    if conn is not None:
        conn.close()


def _stray_reader(path: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.pread(fd, 100, 0)
        finally:
            os.close(fd)
        time.sleep(0.0005)


def _process(
    path: str, seconds: float, stray: bool, index: int, out: str, reconnect: int, writers: int
) -> None:
    deadline = time.monotonic() + seconds
    acknowledged: list[str] = []
    threads = [
        threading.Thread(
            target=_writer,
            args=(path, deadline, f"p{index}w{i}", acknowledged, reconnect),
        )
        for i in range(writers)
    ]
    if stray:
        threads.append(threading.Thread(target=_stray_reader, args=(path, deadline)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Path(out).write_text("\n".join(acknowledged), encoding="utf-8")


def run(
    seconds: float, stray: bool, reconnect: int = 1, writers: int = WRITERS_PER_PROCESS
) -> dict[str, object]:
    """Run one variant in a fresh temporary file; return what was acknowledged and kept."""
    with tempfile.TemporaryDirectory(prefix="posix-lock-") as folder:
        path = os.path.join(folder, "hazard.sqlite")
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, key TEXT UNIQUE, pad BLOB)")
        conn.commit()
        conn.close()
        outs = [os.path.join(folder, f"ack{i}.txt") for i in range(2)]
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(
                target=_process, args=(path, seconds, stray, i, outs[i], reconnect, writers)
            )
            for i in range(2)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        acknowledged = set()
        for out in outs:
            text = Path(out).read_text(encoding="utf-8")
            acknowledged.update(k for k in text.split("\n") if k)
        check = sqlite3.connect(path)
        try:
            integrity = "; ".join(r[0] for r in check.execute("PRAGMA integrity_check"))[:200]
        except sqlite3.DatabaseError as exc:
            integrity = f"error: {exc}"
        try:
            present = {r[0] for r in check.execute("SELECT key FROM t")}
        except sqlite3.DatabaseError:
            present = set()
        check.close()
    lost = acknowledged - present
    return {
        "stray": stray,
        "acknowledged": len(acknowledged),
        "present": len(acknowledged & present),
        "lost": len(lost),
        "integrity": integrity,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each variant")
    parser.add_argument("--stray", action="store_true", help="run only the hazardous variant")
    parser.add_argument(
        "--reconnect", type=int, default=1, help="writes per connection (1: one per request)"
    )
    parser.add_argument("--writers", type=int, default=WRITERS_PER_PROCESS, help="per process")
    args = parser.parse_args(argv)
    variants = [True] if args.stray else [False, True]
    for stray in variants:
        r = run(args.seconds, stray, args.reconnect, args.writers)
        label = "with stray open/close" if stray else "without (baseline)   "
        print(
            f"{label}: acknowledged {r['acknowledged']:6d}  present {r['present']:6d}  "
            f"lost {r['lost']:5d}  integrity {r['integrity']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
