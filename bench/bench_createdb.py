"""Benchmark: a new database from the starter seed package, queue to ready, against initdb+loaddata.

NukeWorks: `manage.py createdb <label> --seed starter@1` with the queue's worker running
(`manage.py run_huey`, as `make run` starts it): the command queues the job, the worker builds
the file under a temporary name (migrate, apply the package with new keys, check, stamp
seed_status, link into place) and the command returns once the database is ready. Also timed
in this process: `provisioning.service.request_build` to a "ready" status (no process start).

Baseline: `manage.py initdb <label>` + `manage.py loaddata starter.json --database <label>`, the
same data as a Django fixture made from the package's own rows (its keys as they are).

Rounds alternate A B / B A; the figure is the median ratio createdb / (initdb + loaddata).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SEED = ROOT / "seeds" / "starter" / "1"


def _env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
        "NUKEWORKS_DATABASES_DIR": str(work / "databases"),
        "NUKEWORKS_INSTANCE_DIR": str(work / "instance"),
        "NUKEWORKS_DEFAULT_DB": str(work / "default.sqlite"),
        "SESSION_FILE_PATH": str(work / "instance" / "sessions"),
        "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "LOG_LEVEL": "WARNING",
    }


def make_fixture(target: Path) -> int:
    """Write the starter package's rows as a Django fixture; return how many objects."""
    objects = []
    for line in (SEED / "data" / "companies.company.jsonl").read_text().splitlines():
        row = json.loads(line)
        pk = row.pop("id")
        objects.append({"model": "companies.company", "pk": pk, "fields": row})
    for line in (SEED / "data" / "companies.project.jsonl").read_text().splitlines():
        row = json.loads(line)
        pk = row.pop("id")
        row["company"] = row.pop("company_id")
        objects.append({"model": "companies.project", "pk": pk, "fields": row})
    target.write_text(json.dumps(objects))
    return len(objects)


def _run(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def _count_rows(path: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return sum(
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("companies_company", "companies_project")
        )
    finally:
        conn.close()


def _in_process(work: Path, rounds: int) -> list[float]:
    """request_build -> status "ready", timed in this process (the worker builds)."""
    os.environ.update(_env(work))
    import django

    django.setup()
    from provisioning import progress, service

    times = []
    for index in range(rounds):
        label = f"inproc{index}"
        started = time.perf_counter()
        service.request_build(label, seed="starter@1", via="bench")
        while progress.status(label).state != progress.READY:
            if progress.status(label).state not in progress.IN_PROGRESS:
                raise RuntimeError(progress.status(label))
            time.sleep(0.005)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="alternated rounds (default 8)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nukeworks-bench-createdb-") as tmp:
        work = Path(tmp)
        (work / "databases").mkdir()
        (work / "instance" / "sessions").mkdir(parents=True)
        env = _env(work)
        fixture = work / "starter.json"
        objects = make_fixture(fixture)
        log = open(work / "worker.log", "wb")  # noqa: SIM115 - handed to the worker
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "run_huey"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            announced = work / "instance" / "provisioning" / "workers"
            deadline = time.monotonic() + 60
            while not (announced.is_dir() and any(announced.iterdir())):
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError("the worker did not start")
                time.sleep(0.1)

            def ours(index: int | str) -> float:
                return _run(["createdb", f"n{index}", "--seed", "starter@1", "--no-progress"], env)

            def baseline(index: int | str) -> float:
                # loaddata --database <label>: scanned databases are aliases named by label.
                return _run(["initdb", f"b{index}"], env) + _run(
                    ["loaddata", str(fixture), "--database", f"b{index}"], env
                )

            # Warm-up (file caches, .pyc), not counted.
            ours("warm")
            baseline("warm")
            created, loaded = [], []
            for index in range(options.rounds):
                pair = [(created, ours), (loaded, baseline)]
                if index % 2:
                    pair.reverse()
                for times, run in pair:
                    times.append(run(index))
            for index in range(options.rounds):
                for prefix in ("n", "b"):
                    path = work / "databases" / f"{prefix}{index}" / "nukeworks.sqlite"
                    if _count_rows(path) != objects:
                        raise RuntimeError(f"{path} does not hold the {objects} rows")
            queue_to_ready = _in_process(work, options.rounds)
            worker_log = (work / "worker.log").read_text(errors="replace")
            if worker_log.count("executed in") < 2 * options.rounds:
                raise RuntimeError("the worker did not build the databases:\n" + worker_log)
        finally:
            os.killpg(worker.pid, signal.SIGINT)
            worker.wait(30)
            log.close()

    ratios = [c / b for c, b in zip(created, loaded, strict=True)]
    result = {
        "rounds": options.rounds,
        "rows": objects,
        "seconds": {
            "createdb_with_worker": created,
            "initdb_plus_loaddata": loaded,
            "queue_to_ready_in_process": queue_to_ready,
        },
        "median_seconds": {
            "createdb_with_worker": statistics.median(created),
            "initdb_plus_loaddata": statistics.median(loaded),
            "queue_to_ready_in_process": statistics.median(queue_to_ready),
        },
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
    }
    print(f"starter@1 ({objects} rows), {options.rounds} alternated rounds:")
    print(
        f"  manage.py createdb --seed starter@1 (worker running, queue to ready): "
        f"{result['median_seconds']['createdb_with_worker'] * 1000:.0f} ms median"
    )
    print(
        f"  manage.py initdb + loaddata (same rows):                            "
        f"{result['median_seconds']['initdb_plus_loaddata'] * 1000:.0f} ms median"
    )
    print(
        f"  ratio createdb / (initdb + loaddata): x{result['ratio_median']:.2f} "
        f"(rounds x{min(ratios):.2f}..x{max(ratios):.2f})"
    )
    print(
        f"  in one process, request_build -> ready (the worker's build and pickup): "
        f"{result['median_seconds']['queue_to_ready_in_process'] * 1000:.0f} ms median"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "createdb.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
