"""Benchmark: the schema-state check, and migrate_all against one `migrate` process per database.

1. `inspect_database()` (header + sqlite_master + django_migrations + two look-ups, read-only)
   on a database with 100,000 companies, against opening the same file read-only and running
   `SELECT 1`, side by side in this run: the ratio says what validation costs over the bare
   minimum of touching the file, and a second file with no rows shows it does not grow with
   the data.
2. `manage.py migrate_all` over N databases one migration behind (one process, a snapshot of
   each first) against N separate `manage.py migrate --database <label>` processes.
"""

from __future__ import annotations

import argparse
import json
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


def _env(work: Path, databases: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
        "NUKEWORKS_DATABASES_DIR": str(databases),
        "NUKEWORKS_INSTANCE_DIR": str(work / "instance"),
        "NUKEWORKS_DEFAULT_DB": str(work / "default.sqlite"),
        "SESSION_FILE_PATH": str(work / "instance" / "sessions"),
        "SECRET_KEY": "bench-only",
        "LOG_LEVEL": "WARNING",
    }


def _setup_django(work: Path) -> None:
    os.environ.update(_env(work, work / "databases"))
    import django

    django.setup()


def _make_database(path: Path, migrate_args: tuple[str, ...] = ()) -> None:
    from django.core.management import call_command

    from dbselect import engines, state

    path.parent.mkdir(parents=True, exist_ok=True)
    engines.create_file(str(path))
    engine = engines.register(str(path))
    with state.override(engine.alias):
        call_command("migrate", database=engine.alias, verbosity=0, interactive=False)
        if migrate_args:
            call_command("migrate", *migrate_args, database=engine.alias, verbosity=0)
    from django.db import connections

    connections[engine.alias].close()
    engines.dispose(str(path))


def _fill(path: Path, rows: int) -> None:
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO companies_company (name, website, is_vendor, is_owner, is_operator,"
        " is_constructor, country, notes, created_at, updated_at)"
        " VALUES (?, '', 0, 1, 0, 0, 'Benchland', 'generated row for the benchmark', ?, ?)",
        ((f"Company {i:06d}", "2026-01-01", "2026-01-01") for i in range(rows)),
    )
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _time_calls(fn, repeat: int) -> list[float]:
    fn()  # warm the page cache and the migration graph
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def bench_schema_check(work: Path, rows: int, repeat: int) -> dict[str, float]:
    """Time inspect_database() against a bare read-only SELECT 1 on the same files."""
    from dbselect.files.validation import inspect_database, readonly_uri

    big = work / "big" / "nukeworks.sqlite"
    empty = work / "empty" / "nukeworks.sqlite"
    _make_database(big)
    _make_database(empty)
    _fill(big, rows)

    def select_one(path: Path) -> None:
        conn = sqlite3.connect(readonly_uri(str(path), immutable=True), uri=True)
        conn.execute("SELECT 1").fetchone()
        conn.close()

    check_big = statistics.median(_time_calls(lambda: inspect_database(str(big)), repeat))
    check_empty = statistics.median(_time_calls(lambda: inspect_database(str(empty)), repeat))
    bare_big = statistics.median(_time_calls(lambda: select_one(big), repeat))
    return {
        "rows": rows,
        "file_mib": round(big.stat().st_size / 2**20, 1),
        "check_median_ms": round(check_big * 1000, 3),
        "check_empty_db_median_ms": round(check_empty * 1000, 3),
        "select1_median_ms": round(bare_big * 1000, 3),
        "ratio_check_over_select1": round(check_big / bare_big, 2),
        "ratio_big_over_empty": round(check_big / check_empty, 2),
    }


def bench_migrate_all(work: Path, count: int) -> dict[str, float]:
    """Time migrate_all over `count` old databases against `count` migrate processes."""
    old = work / "old-template.sqlite"
    _make_database(old, ("companies", "0001_initial"))
    sets = {}
    for name in ("all", "each"):
        root = work / f"set-{name}"
        for i in range(count):
            target = root / f"site{i:03d}" / "nukeworks.sqlite"
            target.parent.mkdir(parents=True)
            shutil.copyfile(old, target)
        sets[name] = root
    manage = [sys.executable, str(ROOT / "manage.py")]

    started = time.perf_counter()
    subprocess.run(
        [*manage, "migrate_all", "--no-progress", "-v", "0"],
        env=_env(work, sets["all"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    one_process = time.perf_counter() - started

    started = time.perf_counter()
    for i in range(count):
        subprocess.run(
            [*manage, "migrate", "--database", f"site{i:03d}", "-v", "0"],
            env=_env(work, sets["each"]),
            check=True,
        )
    separate = time.perf_counter() - started
    return {
        "databases": count,
        "migrate_all_s": round(one_process, 2),
        "separate_migrate_runs_s": round(separate, 2),
        "ratio_migrate_all_over_separate": round(one_process / separate, 3),
        "note": "migrate_all also takes and verifies a snapshot of every database first",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--databases", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nukeworks-bench-migrations-"))
    try:
        _setup_django(work)
        schema = bench_schema_check(work, args.rows, args.repeat)
        print(
            f"schema-state check on {schema['rows']:,} rows ({schema['file_mib']} MiB): "
            f"median {schema['check_median_ms']} ms vs read-only SELECT 1 "
            f"{schema['select1_median_ms']} ms -> ratio {schema['ratio_check_over_select1']}x; "
            f"same check on an empty database {schema['check_empty_db_median_ms']} ms "
            f"(big/empty {schema['ratio_big_over_empty']}x)"
        )
        migrate = bench_migrate_all(work, args.databases)
        print(
            f"migrate_all over {migrate['databases']} databases: {migrate['migrate_all_s']} s vs "
            f"{migrate['databases']} separate `manage.py migrate --database` runs: "
            f"{migrate['separate_migrate_runs_s']} s -> ratio "
            f"{migrate['ratio_migrate_all_over_separate']} ({migrate['note']})"
        )
        results = ROOT / "bench" / "results"
        results.mkdir(exist_ok=True)
        (results / "migrations.json").write_text(
            json.dumps({"schema_check": schema, "migrate_all": migrate}, indent=2)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
