"""Export bundles and seed packages carry their attachments (issue 15).

Real database files under the test's databases/ folder, attachments added through the
attachments service (bytes in databases/<label>/payloads/), bundles written by exportdb or
the Export page, applied by importdb (--new and --into), the Import page and createdb. The
bytes are compared as a user gets them: downloaded through the attachment page.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import Client

from bundles import package, schema
from bundles.newdb import build_new_database, database_path
from dbselect import engines, state
from dbselect.conf import get_config
from nukeworks.attachments import service
from nukeworks.companies.models import Company, Project
from payloads.store import PayloadStore, StoreBusy
from tests.bundle_factory import company, jsonl, project
from tests.helpers import dump_without_audit, messages_of, select, sign_in

ADMIN = ("boss", "boss-pw", True)
REPORT = os.urandom(300_000) + b"report"
DRAWING = b"\x89PNG\r\n\x1a\n" + os.urandom(50_000)
NOTES = b"plain notes\n" * 100
SHA = {c: hashlib.sha256(c).hexdigest() for c in (REPORT, DRAWING, NOTES)}


def _alias(path: Path) -> str:
    return engines.register(str(path)).alias


def _attach(path: Path, owner: Company | Project, name: str, content: bytes, user=None) -> None:
    alias = _alias(path)
    with state.override(alias):
        service.add(owner, SimpleUploadedFile(name, content), user=user)
    connections[alias].close()


@pytest.fixture
def source(make_database) -> Path:
    """databases/src: companies Acme and Bolt (not the first keys), project Unit 1 of Bolt,
    four attachments naming three payloads (REPORT twice), one uploaded by the admin."""
    path = make_database(
        name="Source", companies=["Gone 1", "Gone 2", "Acme", "Bolt"], users=[ADMIN], label="src"
    )
    alias = _alias(path)
    Company.objects.using(alias).filter(name__startswith="Gone").delete()
    acme = Company.objects.using(alias).get(name="Acme")
    bolt = Company.objects.using(alias).get(name="Bolt")
    unit = Project.objects.using(alias).create(name="Unit 1", company=bolt)
    boss = get_user_model().objects.using(alias).get(username="boss")
    _attach(path, acme, "report.pdf", REPORT, user=boss)
    _attach(path, bolt, "copy of report.pdf", REPORT)
    _attach(path, unit, "drawing.png", DRAWING)
    _attach(path, acme, "notes.txt", NOTES)
    return path


def _rows(path: Path) -> list[tuple]:
    """Every attachment as what it names: owner kind and name, never keys."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT a.name, a.sha256, a.size, a.content_type, a.uploaded_by_name, a.uploaded_at,"
            " c.name, p.name, pc.name, a.company_id IS NULL, a.project_id IS NULL"
            " FROM attachments_attachment a"
            " LEFT JOIN companies_company c ON c.id = a.company_id"
            " LEFT JOIN companies_project p ON p.id = a.project_id"
            " LEFT JOIN companies_company pc ON pc.id = p.company_id"
            " ORDER BY a.name"
        ).fetchall()
    finally:
        conn.close()


def _ids(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT name, id FROM attachments_attachment").fetchall())
    finally:
        conn.close()


def _store_files(path: Path) -> dict[str, bytes]:
    root = path.parent / "payloads"
    if not root.exists():
        return {}
    return {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file() and len(p.name) == 64}


def _signed_in(path: Path) -> Client:
    client = Client()
    select(client, path)
    sign_in(client, "boss", "boss-pw")
    return client


def _downloads(path: Path) -> dict[str, bytes]:
    client = _signed_in(path)
    found = {}
    for name, pk in _ids(path).items():
        response = client.get(f"/attachments/{pk}/download")
        assert response.status_code == 200, name
        found[name] = b"".join(response.streaming_content)
    return found


def _run(name: str, *args: str) -> str:
    out = io.StringIO()
    call_command(name, *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


EXPECTED_DOWNLOADS = {
    "copy of report.pdf": REPORT,
    "drawing.png": DRAWING,
    "notes.txt": NOTES,
    "report.pdf": REPORT,
}


@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_exportdb_then_importdb_new_carries_the_attachments_byte_identical(source, tmp_path, kind):
    out = tmp_path / ("b.zip" if kind == "zip" else "b")
    _run("exportdb", "src", "-o", str(out), "--users")
    bundle = package.load(out)
    assert bundle.counts["attachments.attachment"] == 4
    # Each payload once, listed with its size; REPORT is named by two rows.
    assert bundle.payloads == {
        SHA[REPORT]: len(REPORT),
        SHA[DRAWING]: len(DRAWING),
        SHA[NOTES]: 1200,
    }
    if kind == "zip":
        with zipfile.ZipFile(out) as zf:
            members = sorted(n for n in zf.namelist() if n.startswith("payloads/"))
            assert members == sorted(f"payloads/{s}" for s in SHA.values())
            assert zf.read(f"payloads/{SHA[DRAWING]}") == DRAWING
    else:
        assert (out / "payloads" / SHA[REPORT]).read_bytes() == REPORT
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["payloads"] == bundle.payloads

    printed = _run("importdb", str(out), "--new", "copy")
    assert "4 attachment rows" in printed
    copy = database_path("copy")
    assert _rows(copy) == _rows(source)
    assert _store_files(copy) == {SHA[c]: c for c in (REPORT, DRAWING, NOTES)}
    assert not any(p.name.startswith(".incoming") for p in (copy.parent / "payloads").iterdir())
    conn = sqlite3.connect(copy)
    try:
        # The uploader was a user of the source file: the name stays, the key does not.
        assert conn.execute("SELECT COUNT(*) FROM attachments_attachment").fetchone() == (4,)
        assert conn.execute(
            "SELECT COUNT(*) FROM attachments_attachment WHERE uploaded_by_id IS NOT NULL"
        ).fetchone() == (0,)
        # Keys were rewritten (the source's companies are 3 and 4, the copy's 1 and 2).
        assert conn.execute("SELECT MAX(company_id) FROM attachments_attachment").fetchone() == (2,)
    finally:
        conn.close()
    assert _downloads(copy) == EXPECTED_DOWNLOADS


def test_the_pages_export_and_import_carry_the_attachments(source, make_database, tmp_path):
    exported = _signed_in(source).post("/bundles/export")
    assert exported.status_code == 200
    download = tmp_path / "download.zip"
    download.write_bytes(b"".join(exported.streaming_content))
    assert len(package.load(download).payloads) == 3

    target = make_database(name="Target", companies=[], users=[ADMIN], label="target")
    client = _signed_in(target)
    response = client.post(
        "/bundles/import",
        {"bundle": SimpleUploadedFile("b.zip", download.read_bytes(), "application/zip")},
        follow=True,
    )
    assert response.status_code == 200
    assert any("4 attachment rows" in m for m in messages_of(response)), messages_of(response)
    assert _rows(target) == _rows(source)
    assert _downloads(target) == EXPECTED_DOWNLOADS


def _tamper_zip(path: Path, member: str, content: bytes | None) -> None:
    """Rewrite the zip with `member` replaced (a well-formed zip: its CRC fits), or left out."""
    with zipfile.ZipFile(path) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    path.unlink()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            if name != member:
                zf.writestr(name, data)
            elif content is not None:
                zf.writestr(name, content)


def _flipped(content: bytes) -> bytes:
    return content[:1000] + bytes([content[1000] ^ 1]) + content[1001:]


@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_a_tampered_payload_is_refused_and_nothing_is_applied(
    source, make_database, tmp_path, kind
):
    out = tmp_path / ("b.zip" if kind == "zip" else "b")
    _run("exportdb", "src", "-o", str(out))
    member = f"payloads/{SHA[DRAWING]}"
    if kind == "zip":
        _tamper_zip(out, member, _flipped(DRAWING))
    else:
        (out / member).chmod(0o644)
        (out / member).write_bytes(_flipped(DRAWING))
    bundle = package.load(out)  # same size, same names: only the content tells

    target = make_database(companies=[], users=[ADMIN], label="target")
    before = dump_without_audit(target)
    with pytest.raises(package.BundleError, match="does not match its SHA-256"):
        package.apply(bundle, _alias(target))
    assert dump_without_audit(target) == before
    # What was put before the damaged file is valid content no row names (the collector's);
    # the damaged content never took a name, and no temporary file is left.
    assert SHA[DRAWING] not in _store_files(target)
    assert _store_files(target).keys() <= {SHA[REPORT], SHA[NOTES]}
    leftovers = [p for p in (target.parent / "payloads").iterdir() if p.name.startswith(".inc")]
    assert leftovers == []

    with pytest.raises(CommandError, match="does not match its SHA-256"):
        _run("importdb", str(out), "--new", "copy")
    assert not database_path("copy").exists()
    assert [p.name for p in database_path("copy").parent.iterdir()] == [".build.lock"]


@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_a_bundle_missing_a_payload_file_is_refused(source, tmp_path, kind):
    out = tmp_path / ("b.zip" if kind == "zip" else "b")
    _run("exportdb", "src", "-o", str(out))
    member = f"payloads/{SHA[NOTES]}"
    if kind == "zip":
        _tamper_zip(out, member, None)
    else:
        (out / member).unlink()
    with pytest.raises(package.BundleError, match=f"has no file {member}"):
        package.load(out)
    with pytest.raises(CommandError, match=f"has no file {member}"):
        _run("importdb", str(out), "--new", "copy")
    assert not database_path("copy").parent.exists()


def test_a_payload_member_of_another_size_than_listed_is_refused(source, tmp_path):
    out = tmp_path / "b"
    _run("exportdb", "src", "-o", str(out))
    member = out / "payloads" / SHA[NOTES]
    member.chmod(0o644)
    member.write_bytes(NOTES + b"more")
    with pytest.raises(package.BundleError, match=r"holds 1204 bytes, manifest\.json says 1200"):
        package.load(out)


# -- bundles written by hand: rows naming payloads the bundle may or may not carry -------------


def attachment(pk: int, sha: str, size: int, *, company_id=None, project_id=None, **extra):
    row = {
        "id": pk,
        "company_id": company_id,
        "project_id": project_id,
        "sha256": sha,
        "size": size,
        "name": f"file-{pk}.bin",
        "content_type": "application/octet-stream",
        "uploaded_by_name": "someone",
        "uploaded_at": "2025-01-02T03:04:05+00:00",
    }
    row.update(extra)
    return row


def _hand_bundle(
    target: Path, rows: list[dict], carried: dict[str, bytes], *, payloads_key: bool = True
) -> Path:
    data = {
        "data/companies.company.jsonl": jsonl([company(10, "Acme")]),
        "data/companies.project.jsonl": jsonl([project(20, "Unit 1", 10)]),
        "data/attachments.attachment.jsonl": jsonl(rows),
    }
    tables = {
        f[5:-6]: {
            "file": f,
            "rows": len(c.splitlines()),
            "sha256": hashlib.sha256(c).hexdigest(),
        }
        for f, c in data.items()
    }
    digests = {t["file"]: t["sha256"] for t in tables.values()}
    digests.update(
        {
            f"payloads/{hashlib.sha256(c).hexdigest()}": hashlib.sha256(c).hexdigest()
            for c in carried.values()
        }
    )
    manifest = {
        "format": "nukeworks-bundle",
        "format_version": 1,
        "name": "hand",
        "version": 1,
        "schema": [[a, m] for a, m in sorted(schema.code_leaves().items())],
        "tables": tables,
        "counts": {label: t["rows"] for label, t in tables.items()},
        "include_users": False,
        "checksum": package.overall_checksum(digests),
    }
    if payloads_key:
        manifest["payloads"] = {sha: len(c) for sha, c in carried.items()}
    target.mkdir()
    (target / "manifest.json").write_text(json.dumps(manifest))
    for name, content in data.items():
        (target / name).parent.mkdir(exist_ok=True)
        (target / name).write_bytes(content)
    for sha, content in carried.items():
        (target / "payloads").mkdir(exist_ok=True)
        (target / "payloads" / sha).write_bytes(content)
    return target


def test_null_references_stay_null_and_the_others_are_rewritten(make_database, tmp_path):
    rows = [
        attachment(1, SHA[NOTES], len(NOTES), company_id=10),
        attachment(2, SHA[NOTES], len(NOTES), project_id=20),
    ]
    bundle = package.load(_hand_bundle(tmp_path / "b", rows, {SHA[NOTES]: NOTES}))
    target = make_database(companies=["Temp"])
    alias = _alias(target)
    Company.objects.using(alias).all().delete()  # the next company key is 2, not 1 or 10
    counts = package.apply(bundle, alias)
    assert counts["attachments.attachment"] == 2
    conn = sqlite3.connect(target)
    try:
        (acme,) = conn.execute("SELECT id FROM companies_company").fetchone()
        (unit,) = conn.execute("SELECT id FROM companies_project").fetchone()
        assert conn.execute(
            "SELECT name, company_id, project_id FROM attachments_attachment ORDER BY name"
        ).fetchall() == [("file-1.bin", acme, None), ("file-2.bin", None, unit)]
    finally:
        conn.close()
    assert acme == 2


def test_rows_naming_a_payload_neither_carried_nor_in_the_target_are_refused(
    make_database, tmp_path
):
    rows = [attachment(1, SHA[REPORT], len(REPORT), company_id=10)]
    bundle = package.load(_hand_bundle(tmp_path / "b", rows, {}, payloads_key=False))
    target = make_database(companies=[], label="target")
    before = dump_without_audit(target)
    with pytest.raises(package.BundleError, match="neither in the bundle nor in the target"):
        package.apply(bundle, _alias(target))
    assert dump_without_audit(target) == before

    # Content already in the target's store (e.g. kept for its snapshots) is enough.
    store = PayloadStore.for_database(target)
    with store.writing():
        store.put([REPORT])
    assert package.apply(bundle, _alias(target))["attachments.attachment"] == 1
    assert _rows(target)[0][:3] == ("file-1.bin", SHA[REPORT], len(REPORT))


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        (
            [attachment(1, SHA[NOTES], len(NOTES), company_id=10, project_id=20)],
            "exactly one of company_id, project_id",
        ),
        ([attachment(1, SHA[NOTES], len(NOTES))], "exactly one of company_id, project_id"),
        ([attachment(1, SHA[NOTES], 5, company_id=10)], "size 5 does not match"),
        ([attachment(1, "../../etc/passwd", 5, company_id=10)], "not a SHA-256"),
        ([attachment(1, SHA[NOTES], len(NOTES), company_id=99)], "company_id 99 names no row"),
    ],
    ids=["two-owners", "no-owner", "wrong-size", "not-a-hash", "unknown-company"],
)
def test_invalid_attachment_rows_are_refused(make_database, tmp_path, rows, reason):
    bundle = package.load(_hand_bundle(tmp_path / "b", rows, {SHA[NOTES]: NOTES}))
    target = make_database(companies=[], label="target")
    with pytest.raises(package.BundleError, match=reason):
        package.apply(bundle, _alias(target))
    assert _store_files(target) == {}


def _zip_of(folder: Path, extra: dict[str, bytes] | None = None) -> Path:
    path = folder.with_suffix(".zip")
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.writestr(str(file.relative_to(folder)), file.read_bytes())
        for name, content in (extra or {}).items():
            zf.writestr(name, content)
    return path


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"payloads/abc": b"x"}, "does not list: payloads/abc"),
        ({"payloads/../evil": b"x"}, "outside its folder"),
        ({f"payloads/{'0' * 64}": b"x"}, f"does not list: payloads/{'0' * 64}"),
        ({f"payloads/{SHA[NOTES].upper()}": b"x"}, "does not list"),
    ],
    ids=["short-name", "traversal", "unlisted-hash", "upper-case"],
)
def test_only_listed_payloads_slash_sha256_members_are_accepted(tmp_path, extra, reason):
    rows = [attachment(1, SHA[NOTES], len(NOTES), company_id=10)]
    folder = _hand_bundle(tmp_path / "b", rows, {SHA[NOTES]: NOTES})
    assert package.load(_zip_of(folder)).payloads == {SHA[NOTES]: len(NOTES)}
    (tmp_path / "b.zip").unlink()
    with pytest.raises(package.BundleError, match=reason):
        package.load(_zip_of(folder, extra))


def test_a_payload_over_the_attachments_limit_is_refused_413(tmp_path, settings):
    rows = [attachment(1, SHA[NOTES], len(NOTES), company_id=10)]
    folder = _hand_bundle(tmp_path / "b", rows, {SHA[NOTES]: NOTES})
    settings.NUKEWORKS_ATTACHMENTS = {"MAX_BYTES": 1000}
    with pytest.raises(package.BundleError, match="larger than the limit") as refused:
        package.load(_zip_of(folder))
    assert refused.value.status == 413


# -- compatibility, export refusals, locking, streaming -------------------------------------------


def test_bundles_without_payloads_still_import_and_add_no_store(make_database, tmp_path):
    starter = Path(__file__).resolve().parent.parent / "seeds" / "starter" / "1"
    assert "Created old from starter@1" in _run("importdb", str(starter), "--new", "old")
    assert not (database_path("old").parent / "payloads").exists()
    # A database without attachments exports the format as it was: no table, no payloads.
    make_database(companies=["Acme"], label="plain")
    _run("exportdb", "plain", "-o", str(tmp_path / "p.zip"))
    with zipfile.ZipFile(tmp_path / "p.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert not any(n.startswith("payloads") for n in zf.namelist())
    assert "payloads" not in manifest and "attachments.attachment" not in manifest["tables"]


def test_every_migration_of_attachments_says_how_its_data_is_brought_forward():
    graph = schema.code_graph()
    for node in graph.forwards_plan(("attachments", schema.code_leaves()["attachments"])):
        if node[0] == "attachments":
            assert node in schema.UPGRADES, f"bundles.schema.UPGRADES lacks {node}"


def test_export_refuses_a_row_whose_file_is_missing_and_writes_nothing(source, tmp_path):
    (source.parent / "payloads" / SHA[DRAWING][:2] / SHA[DRAWING]).unlink()
    with pytest.raises(CommandError, match=r"missing.*`manage.py dbcheck src`"):
        _run("exportdb", "src", "-o", str(tmp_path / "b.zip"))
    assert list(tmp_path.glob("*.zip")) == [] and list(tmp_path.glob(".*partial")) == []


def test_export_refuses_a_damaged_file(source, tmp_path):
    damaged = source.parent / "payloads" / SHA[DRAWING][:2] / SHA[DRAWING]
    damaged.chmod(0o644)
    damaged.write_bytes(_flipped(DRAWING))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(package.BundleError, match=r"damaged.*dbcheck src"):
        package.export(_alias(source), out / "b", name="b", version=1)
    assert list(out.iterdir()) == []


def test_the_target_store_is_held_until_the_rows_are_committed(
    source, make_database, tmp_path, monkeypatch
):
    bundle = package.export(_alias(source), tmp_path / "b.zip", name="b", version=1)
    target = make_database(companies=[], label="target")
    store = PayloadStore.for_database(target)
    write = package._write
    seen = []

    def write_while_collector_waits(*args, **kwargs):
        # The payloads are in place, the rows not committed yet: the collector cannot start.
        seen.append(set(_store_files(target)))
        with pytest.raises(StoreBusy), store.collecting(timeout=0):
            pass
        return write(*args, **kwargs)

    monkeypatch.setattr(package, "_write", write_while_collector_waits)
    package.apply(bundle, _alias(target))
    assert seen == [set(SHA.values())]
    with store.collecting(timeout=0):  # released afterwards
        pass


def test_a_seed_package_with_attachments_builds_a_database_with_them(source, tmp_path, settings):
    from huey.contrib.djhuey import HUEY

    settings.NUKEWORKS_SEEDS_DIR = tmp_path / "seeds"
    (tmp_path / "seeds" / "docs").mkdir(parents=True)
    _run("exportdb", "src", "-o", str(tmp_path / "seeds" / "docs" / "1"), "--name", "docs")
    assert [p.ref for p in package.available()] == ["docs@1"]
    settings.DBSELECT = {**settings.DBSELECT, "ENGINE_STORE_DIR": tmp_path / "engines"}
    HUEY.flush()
    try:
        call_command(
            "createdb",
            "seeded",
            seed="docs@1",
            admin="boss",
            admin_password="Very-long-admin-pw-1",
            no_wait=True,
            stdout=io.StringIO(),
        )
        while (task := HUEY.dequeue()) is not None:
            HUEY.execute(task)
    finally:
        HUEY.flush()
    seeded = Path(get_config()["DATABASES_DIR"]) / "seeded" / "nukeworks.sqlite"
    assert _rows(seeded) == _rows(source)
    client = Client()
    select(client, seeded)
    sign_in(client, "boss", "Very-long-admin-pw-1")
    for name, pk in _ids(seeded).items():
        body = b"".join(client.get(f"/attachments/{pk}/download").streaming_content)
        assert body == EXPECTED_DOWNLOADS[name]


def test_a_failed_build_removes_the_store_it_made(source, tmp_path, monkeypatch):
    bundle = package.export(_alias(source), tmp_path / "b", name="b", version=1)

    def fail(alias):
        raise package.BundleError("checked and refused")

    monkeypatch.setattr("bundles.newdb._check", fail)
    with pytest.raises(package.BundleError, match="checked and refused"):
        build_new_database("copy", package=bundle, display_name="C", admin=None)
    assert [p.name for p in database_path("copy").parent.iterdir()] == [".build.lock"]


def test_export_and_apply_stream_payloads_instead_of_loading_them(
    make_database, tmp_path, settings
):
    big = os.urandom(1024 * 1024) * 24  # 24 MiB
    path = make_database(companies=["Acme"], label="big")
    _attach(path, Company.objects.using(_alias(path)).get(), "big.bin", big)
    target = make_database(companies=[], label="target")
    tracemalloc.start()
    try:
        bundle = package.export(_alias(path), tmp_path / "big.zip", name="big", version=1)
        package.apply(bundle, _alias(target))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"
    assert _store_files(target)[hashlib.sha256(big).hexdigest()] == big
