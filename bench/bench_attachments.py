"""Benchmark: snapshot of a database with 1 GiB of attachments, against `cp -r` of its folder.

A database `databases/bench/` is made with `manage.py initdb`, then --attachments-mib MiB
(1 GiB by default) of incompressible attachments are stored through the payload store (files
of --file-mib MiB each) with their Attachment rows. Rounds then alternate (A B / B A):

- NukeWorks: `snapshots.service.create_snapshot` of the database: the small SQLite file is
  copied, written, hashed and flushed; the attachments are only *recorded* (the sidecar lists
  their hashes and the shared, immutable store keeps them), never copied;
- baseline: `cp -r` of the database folder (file + payloads) to a sibling folder, and the same
  followed by `sync` of every copied file (what a durable copy of the folder costs).

Printed: median seconds, time ratios snapshot / cp -r and snapshot / (cp -r + sync), and the
extra space each takes (bytes of new files), as a ratio. Goal: near-zero extra space and time
for unchanged attachments.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "attachments.json"


def _setup_env(work: Path) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
            "NUKEWORKS_DATABASES_DIR": str(work / "databases"),
            "NUKEWORKS_INSTANCE_DIR": str(work / "instance"),
            "NUKEWORKS_DEFAULT_DB": str(work / "default.sqlite"),
            "SESSION_FILE_PATH": str(work / "instance" / "sessions"),
            "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
            "LOG_LEVEL": "WARNING",
        }
    )
    (work / "instance" / "sessions").mkdir(parents=True)


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _fill(database: str, total_mib: int, file_mib: int) -> int:
    from dbselect import engines, state
    from nukeworks.attachments.models import Attachment
    from nukeworks.companies.models import Company
    from payloads.store import PayloadStore

    store = PayloadStore.for_database(database)
    alias = engines.register(database).alias
    count = max(1, total_mib // file_mib)
    with state.override(alias):
        company = Company.objects.create(name="Bench Co", country="Benchland")
        for i in range(count):
            with store.writing():
                stored = store.put(os.urandom(1 << 20) for _ in range(file_mib))
                Attachment.objects.create(
                    company=company,
                    sha256=stored.sha256,
                    size=stored.size,
                    name=f"drawing-{i}.bin",
                    content_type="application/octet-stream",
                )
    return count


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attachments-mib", type=int, default=1024)
    parser.add_argument("--file-mib", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="64 MiB, one round.")
    args, _ = parser.parse_known_args()
    if args.quick:
        args.attachments_mib, args.repeat = 64, 1
    work = Path(tempfile.mkdtemp(prefix="nw-bench-attach-", dir=ROOT / "bench"))
    try:
        _setup_env(work)
        import django

        django.setup()
        from django.core.management import call_command

        from snapshots import service

        call_command(
            "initdb", "bench", "--display-name", "Bench", verbosity=0, stdout=io.StringIO()
        )
        database = str(work / "databases" / "bench" / "nukeworks.sqlite")
        files = _fill(database, args.attachments_mib, args.file_mib)
        folder = Path(database).parent
        payload_bytes = _tree_bytes(folder / "payloads")
        print(
            f"database folder: {files} attachments, {payload_bytes / 2**20:.0f} MiB of payloads, "
            f"database file {os.path.getsize(database) / 2**10:.0f} KiB"
        )
        snap_times: list[float] = []
        snap_space: list[int] = []
        cp_times: list[float] = []
        cp_sync_times: list[float] = []
        cp_space: list[int] = []

        def snapshot() -> None:
            before = _tree_bytes(folder / "snapshots") if (folder / "snapshots").exists() else 0
            snap_times.append(_timed(lambda: service.create_snapshot(database, note="bench")))
            snap_space.append(_tree_bytes(folder / "snapshots") - before)

        def copy(sync: bool) -> None:
            target = work / "copy"
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["sync"], check=True)

            def run() -> None:
                subprocess.run(["cp", "-r", str(folder), str(target)], check=True)
                if sync:
                    copied = [str(p) for p in target.rglob("*") if p.is_file()]
                    subprocess.run(["sync", *copied], check=True)

            (cp_sync_times if sync else cp_times).append(_timed(run))
            cp_space.append(_tree_bytes(target))
            shutil.rmtree(target)

        for round_ in range(args.repeat):
            order = (snapshot, lambda: copy(False), lambda: copy(True))
            for step in order if round_ % 2 == 0 else reversed(order):
                step()
        snap, cp, cp_sync = (
            statistics.median(snap_times),
            statistics.median(cp_times),
            statistics.median(cp_sync_times),
        )
        figures = {
            "attachments_mib": args.attachments_mib,
            "files": files,
            "snapshot_s": round(snap, 4),
            "cp_r_s": round(cp, 4),
            "cp_r_sync_s": round(cp_sync, 4),
            "time_ratio_vs_cp_r": round(snap / cp, 4),
            "time_ratio_vs_cp_r_sync": round(snap / cp_sync, 4),
            "snapshot_extra_bytes": int(statistics.median(snap_space)),
            "cp_r_extra_bytes": int(statistics.median(cp_space)),
            "space_ratio": round(statistics.median(snap_space) / statistics.median(cp_space), 6),
        }
        print(
            f"snapshot {snap:.3f} s vs cp -r {cp:.3f} s (x{snap / cp:.4f}) "
            f"vs cp -r + sync {cp_sync:.3f} s (x{snap / cp_sync:.4f})"
        )
        print(
            f"extra space: snapshot {figures['snapshot_extra_bytes'] / 2**10:.0f} KiB vs "
            f"cp -r {figures['cp_r_extra_bytes'] / 2**20:.0f} MiB "
            f"(x{figures['space_ratio']:.6f})"
        )
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
