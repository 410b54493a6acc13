"""Write bundles by hand for tests: valid ones with chosen rows, and every kind of broken one."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

from bundles import schema
from bundles.package import overall_checksum


def company(pk: int, name: str, **extra: Any) -> dict[str, Any]:
    row = {
        "id": pk,
        "name": name,
        "is_vendor": False,
        "is_owner": True,
        "is_operator": False,
        "is_constructor": False,
        "country": "Testland",
        "website": "",
        "notes": "",
        "created_at": "2025-01-02T03:04:05+00:00",
        "updated_at": "2025-01-02T03:04:05+00:00",
    }
    row.update(extra)
    return row


def project(pk: int, name: str, company_id: int, **extra: Any) -> dict[str, Any]:
    row = {
        "id": pk,
        "name": name,
        "company_id": company_id,
        "status": "planned",
        "capacity_mw": "300.0",
        "cod_date": None,
        "notes": "",
        "created_at": "2025-01-02T03:04:05+00:00",
        "updated_at": "2025-01-02T03:04:05+00:00",
    }
    row.update(extra)
    return row


def jsonl(rows: list[Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def make_bundle(
    target: Path,
    *,
    companies: list[Any] | None = None,
    projects: list[Any] | None = None,
    users: list[Any] | None = None,
    schema_state: dict[str, str] | None = None,
    manifest: dict[str, Any] | None = None,
    files: dict[str, bytes] | None = None,
    name: str = "test",
    version: int | str = 1,
) -> Path:
    """Write a bundle (a .zip when `target` ends in .zip, else a folder); return `target`.

    Checksums are computed over the files given; `manifest` entries override the computed
    manifest afterwards (None values delete a key), `files` overrides or adds raw files.
    """
    data = {
        "data/companies.company.jsonl": jsonl(companies if companies is not None else []),
        "data/companies.project.jsonl": jsonl(projects if projects is not None else []),
    }
    if users is not None:
        data["data/accounts.user.jsonl"] = jsonl(users)
    state = schema_state or schema.code_leaves()
    tables = {}
    for file, content in data.items():
        label = file[len("data/") : -len(".jsonl")]
        rows = sum(1 for line in content.splitlines() if line.strip())
        tables[label] = {"file": file, "rows": rows, "sha256": hashlib.sha256(content).hexdigest()}
    built = {
        "format": "nukeworks-bundle",
        "format_version": 1,
        "name": name,
        "version": version,
        "description": "made by a test",
        "schema": [[a, m] for a, m in sorted(state.items())],
        "tables": tables,
        "counts": {label: t["rows"] for label, t in tables.items()},
        "include_users": users is not None,
        "checksum": overall_checksum({t["file"]: t["sha256"] for t in tables.values()}),
        "created_at": "2025-01-02T03:04:05+00:00",
    }
    for key, value in (manifest or {}).items():
        if value is None:
            built.pop(key, None)
        else:
            built[key] = value
    members = {"manifest.json": json.dumps(built).encode(), **data, **(files or {})}
    members = {k: v for k, v in members.items() if v is not None}
    if target.suffix == ".zip":
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, content in members.items():
                zf.writestr(member, content)
    else:
        for member, content in members.items():
            (target / member).parent.mkdir(parents=True, exist_ok=True)
            (target / member).write_bytes(content)
    return target


def rows_of(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def domain_snapshot(path: Path) -> dict[str, list[tuple]]:
    """Every company and project of a file, keys replaced by what they name (names)."""
    companies = rows_of(
        path,
        "SELECT name, is_vendor, is_owner, is_operator, is_constructor, country, website, notes,"
        " created_at, updated_at FROM companies_company ORDER BY name",
    )
    projects = rows_of(
        path,
        "SELECT p.name, c.name, p.status, p.capacity_mw, p.cod_date, p.notes, p.created_at,"
        " p.updated_at FROM companies_project p JOIN companies_company c ON c.id = p.company_id"
        " ORDER BY p.name, c.name, p.id",
    )
    return {"companies": companies, "projects": projects}
