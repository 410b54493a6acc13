"""Server time of the company and project pages on 1,000,000 companies and 1,000,000 projects.

Run as `python bench/bench_scale.py [--companies N] [--projects N] [--requests N] [--keep DIR]`
(`make bench` runs it with the others). Two databases, each a real SQLite file:

- **scale**: migrated with Django (companies 0003's indexes included), then filled by bulk SQL
  through sqlite3 (recursive CTEs, one statement per table: 13-35 s for both tables); one
  company holds 20,000 of the projects (its page, its projects' list), the others one each;
  no ANALYZE is run, as a database in use would not have it either;
- **demo**: migrated and filled by `manage.py seed_demo`.

Each is selected and signed in to with the Django test client (the project's settings and
middleware, a file session), then every page is requested: 3 warm-ups, then N timed requests
(`time.perf_counter` around the in-process request: URL routing, middleware, views, queries,
templates). Printed per page: the median and the maximum in ms, and whether the median is
under the 50 ms budget. Exit status 1 if a median is over it.
"""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_MS = 50.0
PASSWORD = "bench-scale-pw"
WARM = 3


def configure(workdir: Path) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
            "NUKEWORKS_DATABASES_DIR": str(workdir / "databases"),
            "NUKEWORKS_INSTANCE_DIR": str(workdir / "instance"),
            "NUKEWORKS_DEFAULT_DB": str(workdir / "databases" / "default" / "nukeworks.sqlite"),
            "SESSION_FILE_PATH": str(workdir / "sessions"),
            "SECRET_KEY": "bench-scale",
            # Both bench databases are operators' ones: the engines, catalog and New database
            # pages are measured too.
            "NUKEWORKS_OPERATOR_DATABASES": ":".join(
                str(workdir / "databases" / name / "nukeworks.sqlite") for name in ("scale", "demo")
            ),
            "LOG_LEVEL": "WARNING",
        }
    )
    (workdir / "sessions").mkdir(parents=True, exist_ok=True)
    (workdir / "instance").mkdir(parents=True, exist_ok=True)
    import django

    django.setup()


def migrated(path: Path, name: str, *, demo: bool = False) -> None:
    """A migrated database at `path` with its display name and an admin `bench`."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    from dbselect import engines, state
    from dbselect.models import SystemSetting

    path.parent.mkdir(parents=True, exist_ok=True)
    engines.create_file(str(path))
    engine = engines.register(str(path))
    with state.override(engine.alias):
        call_command("migrate", database=engine.alias, verbosity=0, interactive=False)
        SystemSetting.set_value(SystemSetting.DISPLAY_NAME, name)
        get_user_model().objects.create_user("bench", password=PASSWORD, is_staff=True)
        if demo:
            call_command("seed_demo", database=engine.alias, stdout=io.StringIO())
    connections[engine.alias].close()
    engines.dispose(str(path))


COUNTRIES = [
    "France", "Japan", "United States", "Korea", "Canada", "United Kingdom", "China", "India",
    "Finland", "Sweden", "Poland", "Czechia", "Argentina", "Brazil", "South Africa", "Romania",
]  # fmt: skip


def fill(path: Path, companies: int, projects: int) -> None:
    """Bulk rows through sqlite3: names in index order, countries and dates spread out."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-400000")
        conn.execute("CREATE TEMP TABLE countries (i INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO countries VALUES (?, ?)", enumerate(COUNTRIES))
        n = len(COUNTRIES)
        conn.execute(
            "INSERT INTO companies_company (id, name, is_vendor, is_owner, is_operator,"
            " is_constructor, country, website, notes, created_at, updated_at) "
            "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < ?) "
            "SELECT x, printf('Company %07d', x), x % 2, x % 3 = 0, x % 5 = 0, x % 7 = 0, "
            f"(SELECT name FROM countries WHERE i = (x * 7) % {n}), '', 'Bulk row', "
            "datetime('2020-01-01', printf('+%d minutes', (x * 7919) % 2000000)), "
            "datetime('2020-01-01', printf('+%d minutes', (x * 104729) % 2000000)) FROM s",
            (companies,),
        )
        conn.execute(
            "INSERT INTO companies_project (id, name, company_id, status, capacity_mw, cod_date,"
            " notes, created_at, updated_at) "
            "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < ?) "
            "SELECT x, printf('Project %07d', x), "
            "CASE WHEN x % 50 = 0 THEN 1 ELSE ((x * 7919) % ?) + 1 END, "
            "(CASE x % 5 WHEN 0 THEN 'planned' WHEN 1 THEN 'licensing' WHEN 2 THEN "
            "'construction' WHEN 3 THEN 'operating' ELSE 'cancelled' END), "
            "CASE WHEN x % 4 THEN (x * 37) % 1600 + 0.5 END, "
            "CASE WHEN x % 3 THEN date('2030-01-01', printf('+%d days', (x * 13) % 7000)) END, "
            "'', '2026-01-01', '2026-01-01' FROM s",
            (projects, companies),
        )
        conn.commit()
    finally:
        conn.close()


def signed_in(path: Path):
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    chosen = client.post("/select-db", {"path": str(path)})
    assert chosen.status_code == 302, chosen.status_code
    login = client.post("/login/", {"username": "bench", "password": PASSWORD})
    assert login.status_code == 302, login.status_code
    return client


def _make_superuser(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE accounts_user SET is_superuser = 1 WHERE username = 'bench'")
    finally:
        conn.close()


def pages(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        (company_count,) = conn.execute("SELECT count(*) FROM companies_company").fetchone()
        company = conn.execute(
            "SELECT company_id FROM companies_project GROUP BY company_id "
            "ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        company_id = company[0] if company else 1
        (project_id,) = conn.execute("SELECT max(id) FROM companies_project").fetchone()
        some = conn.execute(
            "SELECT name FROM companies_company LIMIT 1 OFFSET ?", (company_count // 2,)
        ).fetchone()[0]
    finally:
        conn.close()
    deep = max(1, company_count // 50 // 2)
    result = {
        "home": "/",
        "company list p1": "/companies/",
        "search (common prefix)": "/companies/?q=company",
        f"search ({some[:12]})": f"/companies/?q={some[:12].replace(' ', '+')}",
        "search (no match)": "/companies/?q=zzzz",
        "company detail": f"/companies/{company_id}/",
        "company delete confirm": f"/companies/{company_id}/delete/",
        "project list p1": "/projects/",
        "projects of a company": f"/projects/?company={company_id}",
        "project detail": f"/projects/{project_id}/",
        "project form (new)": f"/projects/new/?company={company_id}",
        "project form (edit)": f"/projects/{project_id}/edit/",
        "picker search": "/companies/search.json?q=company 00012",
    }
    if company_count > 100:  # pages that exist only on a large database
        result["company list p2"] = "/companies/?page=2"
        result[f"company list p{deep} (middle)"] = f"/companies/?page={deep}"
        result[f"project list p{deep} (middle)"] = f"/projects/?page={deep}"
    for sort in ("name", "-name", "country", "-country", "updated", "-updated"):
        result[f"company list sort={sort}"] = f"/companies/?sort={sort}"
        if company_count > 50:
            result[f"company list sort={sort} p2"] = f"/companies/?sort={sort}&page=2"
    for sort in ("-name", "status", "-status", "capacity", "-capacity", "cod", "-cod"):
        result[f"project list sort={sort}"] = f"/projects/?sort={sort}"
    # Every other page of a signed-in operator (the bench databases are operator databases).
    result.update(
        {
            "selector": "/select-db",
            "snapshots": "/snapshots/",
            "database details": "/database/",
            "slow queries": "/database/slow-queries",
            "export/import": "/bundles/",
            "engines (operators)": "/admin/engines/",
            "catalog (operators)": "/catalog/",
            "new database (operators)": "/select-db/new",
            "admin index": "/admin/",
            "admin companies": "/admin/companies/company/",
            "admin projects": "/admin/companies/project/",
        }
    )
    return result


def measure(client, url: str, requests: int) -> tuple[float, float, int]:
    times = []
    status = 0
    for i in range(WARM + requests):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        status = response.status_code
        if i >= WARM:
            times.append(elapsed)
    return statistics.median(times), max(times), status


def report(title: str, path: Path, requests: int) -> bool:
    client = signed_in(path)
    # The admin's model lists need Django's model permissions: the bench user gets them all.
    _make_superuser(path)
    print(f"\n{title}\n{'page':<34} {'median ms':>10} {'max ms':>8}  status  < {BUDGET_MS:.0f} ms")
    ok = True
    for label, url in pages(path).items():
        median, worst, status = measure(client, url, requests)
        under = median < BUDGET_MS and status == 200
        ok &= under
        print(
            f"{label:<34} {median:>10.1f} {worst:>8.1f}  {status:>6}  {'yes' if under else 'NO'}",
            flush=True,
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=1_000_000)
    parser.add_argument("--projects", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temp dir)")
    args, _ = parser.parse_known_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="nukeworks-bench-scale-"))
    configure(workdir)
    scale = workdir / "databases" / "scale" / "nukeworks.sqlite"
    demo = workdir / "databases" / "demo" / "nukeworks.sqlite"
    started = time.monotonic()
    if not scale.exists():
        migrated(scale, "Scale")
        fill(scale, args.companies, args.projects)
    built = time.monotonic() - started
    print(
        f"built {args.companies:,} companies and {args.projects:,} projects in {built:.1f} s "
        f"({scale.stat().st_size / 2**20:.0f} MiB)"
    )
    if not demo.exists():
        migrated(demo, "Demo", demo=True)
    ok = report("demo data (manage.py seed_demo)", demo, args.requests)
    ok &= report(f"{args.companies:,} companies, {args.projects:,} projects", scale, args.requests)
    print(f"\nall medians under {BUDGET_MS:.0f} ms: {'yes' if ok else 'NO'}")
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
