"""Snapshot of a large live database: time against `cp`, and how long a writer is blocked.

Builds a WAL-mode SQLite file of --size-mib MiB (1 GiB by default) in a temporary folder, then
alternates, --repeat times, `cp` of the file, `cp` + fsync, and a NukeWorks snapshot
(snapshots.sqlite_copy.copy_database: the pages of one read transaction written, hashed with
SHA-256 and flushed in one pass by the page copier, then a header/page-count check, rename and
folder fsync), all written to the same folder on the same disk, and reports medians and the
throughput ratios. `--copier backup` measures the in-process fallback instead (online backup
API, then SHA-256 + fsync of the copy). Then a writer *process* commits one small row per
transaction (WAL, synchronous=FULL, like the application) while one more snapshot runs, and
reports its per-write latency against the same writer without a snapshot.

Targets: a snapshot reaches at least half of `cp`'s throughput (issue 3) and 0.9 of `cp` +
fsync's (issue 15), and the writer is never blocked longer than 200 ms. Quick run:
`--size-mib 64 --repeat 1` or `--quick`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nukeworks.settings")

ROW_BYTES = 1000
TARGET_RATIO = 0.5
TARGET_RATIO_FSYNC = 0.9
TARGET_MAX_BLOCK_MS = 200.0


def build_database(path: Path, size_mib: int) -> None:
    """Fill a WAL-mode database with about `size_mib` MiB of rows (random, incompressible)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute(
        "CREATE TABLE records (id INTEGER PRIMARY KEY, kind INTEGER, label TEXT, body BLOB)"
    )
    conn.execute("CREATE TABLE writes (id INTEGER PRIMARY KEY, at REAL, body BLOB)")
    # ~1370 bytes of file per row: the blob, the label, record and page overhead (measured).
    rows = size_mib * 1024 * 1024 // (ROW_BYTES + 370)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO records (kind, label, body) VALUES (?, ?, randomblob(?))",
        ((i % 17, f"record {i}", ROW_BYTES) for i in range(rows)),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    # Built with synchronous=OFF: without this, the kernel writes the gigabyte back ~30 s
    # later, in the middle of a measurement, and every fsync of the writer waits behind it.
    _fsync(path)
    os.sync()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(*paths: Path) -> None:
    for path in paths:
        for candidate in (path, Path(f"{path}.json")):
            if candidate.exists():
                candidate.unlink()


def time_cp(source: Path, target: Path, *, fsync: bool) -> float:
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    if fsync:
        _fsync(target)
    elapsed = time.perf_counter() - started
    _remove(target)
    os.sync()  # leave nothing dirty for the next measurement to flush
    return elapsed


def time_snapshot(source: Path, target: Path) -> tuple[float, float, float]:
    """Return the snapshot's total time, its copy step and its check+rename step."""
    from snapshots.sqlite_copy import copy_database

    started = time.perf_counter()
    result = copy_database(source, target)
    elapsed = time.perf_counter() - started
    _remove(target)
    os.sync()
    return elapsed, result.copy_seconds, result.verify_seconds


def writer(path: str, stop: mp.Event, ready: mp.Event, out: mp.Queue, pause: float) -> None:
    """Commit one row per transaction until `stop`; send back each commit's latency (s)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA synchronous=FULL")
    latencies: list[tuple[float, float]] = []
    ready.set()
    while not stop.is_set():
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO writes (at, body) VALUES (?, randomblob(200))", (time.time(),))
        conn.execute("COMMIT")
        latencies.append((time.time(), time.perf_counter() - started))
        time.sleep(pause)
    conn.close()
    out.put(latencies)


def writer_latency(source: Path, target: Path, baseline_s: float, pause: float) -> dict:
    """Run the writer alone for `baseline_s`, then during one snapshot; return latencies."""
    from snapshots.sqlite_copy import copy_database

    ctx = mp.get_context("spawn")
    stop, ready, out = ctx.Event(), ctx.Event(), ctx.Queue()
    process = ctx.Process(target=writer, args=(str(source), stop, ready, out, pause))
    process.start()
    ready.wait(30)
    time.sleep(baseline_s)
    snap_start = time.time()
    copy_database(source, target)
    snap_end = time.time()
    time.sleep(0.2)
    stop.set()
    latencies = out.get(timeout=60)
    process.join(30)
    _remove(target)
    before = [lat for at, lat in latencies if at < snap_start]
    # A write that ended during the snapshot, or was waiting when it ended.
    during = [lat for at, lat in latencies if snap_start <= at <= snap_end + 0.2]

    def summary(values: list[float]) -> dict:
        if not values:
            return {"writes": 0}
        ordered = sorted(values)
        return {
            "writes": len(values),
            "median_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2),
        }

    return {
        "snapshot_s": round(snap_end - snap_start, 3),
        "without_snapshot": summary(before),
        "during_snapshot": summary(during),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="database size (1024)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds of each (3)")
    parser.add_argument("--quick", action="store_true", help="64 MiB, one round")
    parser.add_argument("--dir", default=None, help="work folder (default: system temp)")
    parser.add_argument(
        "--writer-pause-ms", type=float, default=2.0, help="writer's pause between writes"
    )
    parser.add_argument(
        "--copier",
        choices=("auto", "pages", "backup"),
        default="auto",
        help="how the snapshot is written: as the application does (auto), always the page "
        "copier, or the in-process backup API",
    )
    # run_all.py passes its own arguments to every benchmark: ignore the ones not ours.
    args, _ = parser.parse_known_args()
    if args.quick:
        args.size_mib, args.repeat = 64, 1

    import django

    django.setup()
    from snapshots import sqlite_copy

    if args.copier == "pages":
        if not sqlite_copy.page_copier_available():
            parser.error("the page copier cannot run here (sqlean.py is not installed)")
        sqlite_copy.PAGE_COPY_MIN_BYTES = 0
    elif args.copier == "backup":
        sqlite_copy.page_copier_available = lambda: False
    size_bytes = args.size_mib << 20
    copier = (
        "page copier"
        if sqlite_copy.page_copier_available() and size_bytes >= sqlite_copy.PAGE_COPY_MIN_BYTES
        else "backup API"
    )

    work = Path(tempfile.mkdtemp(prefix="nukeworks-bench-snapshot-", dir=args.dir))
    try:
        source = work / "live.sqlite"
        print(f"building a {args.size_mib} MiB WAL database in {work} …", flush=True)
        started = time.perf_counter()
        build_database(source, args.size_mib)
        size = source.stat().st_size
        print(f"  built {size / 2**20:.0f} MiB in {time.perf_counter() - started:.1f} s")

        cp_times, cp_sync_times, snap_times, copy_times, verify_times = [], [], [], [], []
        for round_ in range(1, args.repeat + 1):
            # Alternate, so a busy neighbour on the disk hurts every method alike.
            cp_times.append(time_cp(source, work / "cp.sqlite", fsync=False))
            total_s, copy_s, verify_s = time_snapshot(source, work / "snap.sqlite")
            snap_times.append(total_s)
            copy_times.append(copy_s)
            verify_times.append(verify_s)
            cp_sync_times.append(time_cp(source, work / "cp-sync.sqlite", fsync=True))
            print(
                f"  round {round_}: cp {cp_times[-1]:.2f} s, cp+fsync {cp_sync_times[-1]:.2f} s,"
                f" snapshot {snap_times[-1]:.2f} s (copy+hash+flush {copy_s:.2f} s +"
                f" check/rename {verify_s:.2f} s)",
                flush=True,
            )
        cp_s, cp_sync_s, snap_s = (
            statistics.median(cp_times),
            statistics.median(cp_sync_times),
            statistics.median(snap_times),
        )
        latency = writer_latency(
            source, work / "snap-writer.sqlite", 2.0, args.writer_pause_ms / 1000
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mib = size / 2**20
    ratio, ratio_sync = cp_s / snap_s, cp_sync_s / snap_s
    during = latency["during_snapshot"]
    print()
    print(f"database size                    {mib:8.0f} MiB")
    print(f"cp (median of {args.repeat})               {cp_s:8.2f} s  {mib / cp_s:7.0f} MiB/s")
    print(f"cp + fsync                       {cp_sync_s:8.2f} s  {mib / cp_sync_s:7.0f} MiB/s")
    print(f"snapshot ({copier:11s})          {snap_s:8.2f} s  {mib / snap_s:7.0f} MiB/s")
    print(
        f"snapshot throughput / cp         {ratio:8.2f}    (target >= {TARGET_RATIO}) "
        f"{'OK' if ratio >= TARGET_RATIO else 'MISSED'}"
    )
    print(
        f"snapshot throughput / cp+fsync   {ratio_sync:8.2f}    (target >= {TARGET_RATIO_FSYNC}) "
        f"{'OK' if ratio_sync >= TARGET_RATIO_FSYNC else 'MISSED'}"
    )
    copy_med, verify_med = statistics.median(copy_times), statistics.median(verify_times)
    print(
        f"  of which copy+SHA-256+fsync     {copy_med:8.2f} s, check+rename+folder fsync "
        f"{verify_med:.2f} s"
    )
    print(
        f"writer without snapshot          {latency['without_snapshot'].get('writes', 0):5d} "
        f"writes, median {latency['without_snapshot'].get('median_ms', 0)} ms, "
        f"max {latency['without_snapshot'].get('max_ms', 0)} ms"
    )
    print(
        f"writer during snapshot ({latency['snapshot_s']:.1f} s)   {during.get('writes', 0):5d} "
        f"writes, median {during.get('median_ms', 0)} ms, p99 {during.get('p99_ms', 0)} ms, "
        f"max {during.get('max_ms', 0)} ms  (target < {TARGET_MAX_BLOCK_MS:.0f} ms) "
        f"{'OK' if during.get('max_ms', 1e9) < TARGET_MAX_BLOCK_MS else 'MISSED'}"
    )

    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "bench_snapshot.json").write_text(
        json.dumps(
            {
                "size_mib": round(mib, 1),
                "copier": copier,
                "repeat": args.repeat,
                "cp_s": cp_times,
                "cp_fsync_s": cp_sync_times,
                "snapshot_s": snap_times,
                "snapshot_copy_hash_flush_s": copy_times,
                "snapshot_check_rename_s": verify_times,
                "ratio_vs_cp": round(ratio, 3),
                "ratio_vs_cp_fsync": round(ratio_sync, 3),
                "writer": latency,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
