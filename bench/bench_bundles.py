"""Export and import of a large database: `exportdb`/`importdb` against `dumpdata`/`loaddata`.

Builds databases/src with --companies companies (100,000 by default) and a project for every
fifth company, in a temporary databases folder, then runs, --repeat times, alternating the
order each round, every command as its own `manage.py` process (start-up included on both
sides):

- export: `exportdb src -o b.zip` against `dumpdata companies --database src -o d.json`;
- import into an empty migrated database: `importdb b.zip --into <label>` (validated, new
  keys, references remapped, one transaction) against `loaddata d.json --database <label>`;
- import as a new database: `importdb b.zip --new <label>` (create, migrate, apply, check,
  stamp, move into place) against `initdb <label>` + `loaddata` of the same data.

Ratios are NukeWorks / Django (medians); the goal is <= 1.0. Every import is checked to hold
all the rows. Quick run: `--companies 10000 --repeat 1` or `--quick`.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "bundles.json"
GOAL = 1.0


def manage(env: dict[str, str], *args: str) -> float:
    """Run one manage.py command in its own process; return its wall-clock seconds."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return elapsed


def fill(path: Path, companies: int) -> None:
    """Add `companies` companies and a project for every fifth one, straight through SQLite."""
    conn = sqlite3.connect(path)
    now = "2025-06-01 12:00:00"
    conn.executemany(
        "INSERT INTO companies_company (name, is_vendor, is_owner, is_operator, is_constructor,"
        " country, website, notes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                f"Company {i:07d}",
                i % 2,
                i % 3 == 0,
                i % 5 == 0,
                i % 7 == 0,
                ("France", "Finland", "Canada", "United States", "South Korea")[i % 5],
                f"https://company{i}.example",
                "Operates a fleet of pressurised water reactors." if i % 4 == 0 else "",
                now,
                now,
            )
            for i in range(companies)
        ),
    )
    conn.executemany(
        "INSERT INTO companies_project (name, company_id, status, capacity_mw, cod_date, notes,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, '', ?, ?)",
        (
            (
                f"Unit {i}",
                i + 1,
                ("planned", "licensing", "construction", "operating", "cancelled")[i % 5],
                f"{300 + i % 1400}.5",
                "2031-01-01" if i % 2 else None,
                now,
                now,
            )
            for i in range(0, companies, 5)
        ),
    )
    conn.commit()
    conn.close()


def counts(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute("SELECT COUNT(*) FROM companies_company").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM companies_project").fetchone()[0],
        )
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10,000 companies, one round.")
    args, _ = parser.parse_known_args()  # bench/run_all.py passes its arguments to every bench
    if args.quick:
        args.companies, args.repeat = 10_000, 1

    with tempfile.TemporaryDirectory(prefix="nukeworks-bench-bundles-") as tmp:
        tmp_path = Path(tmp)
        databases = tmp_path / "databases"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
            "NUKEWORKS_INSTANCE_DIR": str(tmp_path / "instance"),
            "NUKEWORKS_DATABASES_DIR": str(databases),
            "NUKEWORKS_DEFAULT_DB": str(tmp_path / "default.sqlite"),
            "SESSION_FILE_PATH": str(tmp_path / "sessions"),
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-" + "x" * 40),
            "DBSELECT_REGISTER_SCANNED": "1",
        }
        manage(env, "initdb", "src")
        source = databases / "src" / "nukeworks.sqlite"
        fill(source, args.companies)
        expected = counts(source)
        print(
            f"source: {expected[0]:,} companies, {expected[1]:,} projects, "
            f"{source.stat().st_size / 1e6:.1f} MB",
            flush=True,
        )

        times: dict[str, list[float]] = {
            k: []
            for k in (
                "exportdb",
                "dumpdata",
                "importdb_into",
                "loaddata",
                "importdb_new",
                "initdb_loaddata",
            )
        }
        for round_ in range(args.repeat):
            bundle, dump = tmp_path / f"b{round_}.zip", tmp_path / f"d{round_}.json"
            export_jobs = [
                ("exportdb", ("exportdb", "src", "-o", str(bundle), "--no-progress")),
                ("dumpdata", ("dumpdata", "companies", "--database", "src", "-o", str(dump))),
            ]
            for label in (f"into{round_}", f"load{round_}"):
                manage(env, "initdb", label)
            import_jobs = [
                (
                    "importdb_into",
                    ("importdb", str(bundle), "--into", f"into{round_}", "--no-progress"),
                ),
                ("loaddata", ("loaddata", str(dump), "--database", f"load{round_}")),
            ]
            new_jobs = [
                ("importdb_new", ("importdb", str(bundle), "--new", f"new{round_}")),
                ("initdb_loaddata", None),
            ]
            if round_ % 2:
                for jobs in (export_jobs, import_jobs, new_jobs):
                    jobs.reverse()
            for name, command in export_jobs + import_jobs + new_jobs:
                if command is None:
                    elapsed = manage(env, "initdb", f"newload{round_}")
                    elapsed += manage(env, "loaddata", str(dump), "--database", f"newload{round_}")
                else:
                    elapsed = manage(env, *command)
                times[name].append(elapsed)
                print(f"  round {round_ + 1}: {name:<16} {elapsed:7.2f} s", flush=True)
            for label in (f"into{round_}", f"load{round_}", f"new{round_}", f"newload{round_}"):
                got = counts(databases / label / "nukeworks.sqlite")
                if got != expected:
                    raise SystemExit(f"{label} holds {got} rows, expected {expected}")
            print(
                f"  sizes: bundle {bundle.stat().st_size / 1e6:.1f} MB, "
                f"dumpdata JSON {dump.stat().st_size / 1e6:.1f} MB",
                flush=True,
            )

    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = {
        "export (exportdb / dumpdata)": med["exportdb"] / med["dumpdata"],
        "import into empty (importdb --into / loaddata)": med["importdb_into"] / med["loaddata"],
        "import as new (importdb --new / initdb + loaddata)": (
            med["importdb_new"] / med["initdb_loaddata"]
        ),
    }
    pairs = [
        ("exportdb", "dumpdata"),
        ("importdb_into", "loaddata"),
        ("importdb_new", "initdb_loaddata"),
    ]
    print(f"\n{args.companies:,} companies, {args.repeat} round(s), medians (each a process):")
    for (ours, theirs), (what, ratio) in zip(pairs, ratios.items(), strict=True):
        verdict = "ok" if ratio <= GOAL else "OVER GOAL"
        print(
            f"  {what:<52} {med[ours]:7.2f} s vs {med[theirs]:7.2f} s  "
            f"ratio x{ratio:.3f}  (goal <= {GOAL}) {verdict}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "companies": args.companies,
                "repeat": args.repeat,
                "seconds": times,
                "medians": med,
                "ratios": ratios,
            },
            indent=2,
        )
    )
    return 0 if all(r <= GOAL for r in ratios.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
