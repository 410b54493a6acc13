"""Malformed and hostile bundles: each is refused with a clear reason and changes nothing.

Every case is tried through `load` + `apply` into an empty database (the Import page and
`importdb --into`) and through `build_new_database` (importdb --new and the createdb job):
the reason is given, the database's rows are unchanged, no file appears or changes on disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bundles import package, schema
from bundles.newdb import build_new_database, database_path
from dbselect import engines
from tests.bundle_factory import company, jsonl, make_bundle, project
from tests.helpers import dump_without_audit

GOOD_COMPANIES = [company(10, "Acme"), company(11, "Bolt")]
GOOD_PROJECTS = [project(20, "Unit 1", 10)]


def _zip_with(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, content in members:
            zf.writestr(info, content)
    return path


def _good_members(tmp_path: Path) -> list[tuple[str, bytes]]:
    good = make_bundle(tmp_path / "good-src.zip", companies=GOOD_COMPANIES, projects=GOOD_PROJECTS)
    with zipfile.ZipFile(good) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    good.unlink()
    return members


def not_a_zip(tmp: Path) -> Path:
    (tmp / "b.zip").write_bytes(b"PK\x03\x04 this is not really a zip file" * 10)
    return tmp / "b.zip"


def zip_slip(tmp: Path) -> Path:
    return _zip_with(tmp / "b.zip", [*_good_members(tmp), ("../evil.txt", b"owned")])


def zip_slip_nested(tmp: Path) -> Path:
    return _zip_with(tmp / "b.zip", [*_good_members(tmp), ("data/../../evil.txt", b"owned")])


def absolute_member(tmp: Path) -> Path:
    return _zip_with(tmp / "b.zip", [*_good_members(tmp), ("/tmp/evil.txt", b"owned")])


def windows_member(tmp: Path) -> Path:
    return _zip_with(tmp / "b.zip", [*_good_members(tmp), ("C:\\evil.txt", b"owned")])


def symlink_member(tmp: Path) -> Path:
    link = zipfile.ZipInfo("data/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _zip_with(tmp / "b.zip", [*_good_members(tmp), (link, b"/etc/passwd")])


def symlink_in_folder(tmp: Path) -> Path:
    folder = make_bundle(tmp / "folder", companies=GOOD_COMPANIES, projects=GOOD_PROJECTS)
    real = tmp / "elsewhere.jsonl"
    data = folder / "data" / "companies.company.jsonl"
    real.write_bytes(data.read_bytes())
    data.unlink()
    os.symlink(real, data)
    return folder


def duplicate_member(tmp: Path) -> Path:
    members = _good_members(tmp)
    extra = next(m for m in members if m[0] == "data/companies.company.jsonl")
    with pytest.warns(UserWarning, match="Duplicate name"):
        return _zip_with(tmp / "b.zip", [*members, extra])


def unlisted_member(tmp: Path) -> Path:
    return _zip_with(tmp / "b.zip", [*_good_members(tmp), ("data/extra.jsonl", b"{}\n")])


def wrong_checksum(tmp: Path) -> Path:
    members = dict(_good_members(tmp))
    members["data/companies.company.jsonl"] = jsonl([company(10, "Acme"), company(11, "B0lt")])
    return _zip_with(tmp / "b.zip", list(members.items()))


def wrong_overall_checksum(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", companies=GOOD_COMPANIES, manifest={"checksum": "0" * 64})


def missing_manifest(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", companies=GOOD_COMPANIES, files={"manifest.json": None})


def manifest_a_list(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", files={"manifest.json": b"[1, 2, 3]"})


def manifest_not_json(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", files={"manifest.json": b"{not json"})


def manifest_wrong_types(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", manifest={"include_users": "yes"})


def manifest_other_format(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", manifest={"format": "django-dumpdata"})


def newer_format(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", manifest={"format_version": 2})


def unknown_table(tmp: Path) -> Path:
    good = make_bundle(tmp / "src.zip", companies=GOOD_COMPANIES)
    manifest = json.loads(zipfile.ZipFile(good).read("manifest.json"))
    manifest["tables"]["companies.reactor"] = {
        "file": "data/companies.reactor.jsonl",
        "rows": 0,
        "sha256": hashlib.sha256(b"").hexdigest(),
    }
    good.unlink()
    return make_bundle(
        tmp / "b.zip",
        companies=GOOD_COMPANIES,
        manifest={"tables": manifest["tables"]},
        files={"data/companies.reactor.jsonl": b""},
    )


def missing_referenced_company(tmp: Path) -> Path:
    return make_bundle(
        tmp / "b.zip", companies=GOOD_COMPANIES, projects=[project(20, "Unit 1", 99)]
    )


def reference_of_wrong_type(tmp: Path) -> Path:
    return make_bundle(
        tmp / "b.zip", companies=GOOD_COMPANIES, projects=[project(20, "Unit 1", "10; DROP")]
    )


def huge_member(tmp: Path) -> Path:
    notes = "x" * 300_000  # compresses to almost nothing; over the 200,000-byte test limit
    return make_bundle(tmp / "b.zip", companies=[company(1, "Big", notes=notes)])


def newer_schema(tmp: Path) -> Path:
    state = {**schema.code_leaves(), "companies": "0099_from_the_future"}
    return make_bundle(tmp / "b.zip", companies=GOOD_COMPANIES, schema_state=state)


def newer_app(tmp: Path) -> Path:
    state = {**schema.code_leaves(), "reactors": "0001_initial"}
    return make_bundle(tmp / "b.zip", companies=GOOD_COMPANIES, schema_state=state)


def duplicate_keys(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", companies=[company(10, "Acme"), company(10, "Bolt")])


def duplicate_names(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", companies=[company(10, "Acme"), company(11, "Acme")])


def row_count_lies(tmp: Path) -> Path:
    good = make_bundle(tmp / "src.zip", companies=GOOD_COMPANIES)
    manifest = json.loads(zipfile.ZipFile(good).read("manifest.json"))
    good.unlink()
    manifest["tables"]["companies.company"]["rows"] = 1
    return make_bundle(
        tmp / "b.zip",
        companies=GOOD_COMPANIES,
        manifest={"tables": manifest["tables"], "counts": None},
    )


def unknown_column(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", companies=[company(1, "Acme", is_admin=True)])


def invalid_choice(tmp: Path) -> Path:
    return make_bundle(
        tmp / "b.zip",
        companies=GOOD_COMPANIES,
        projects=[project(20, "Unit 1", 10, status="melted")],
    )


def invalid_decimal(tmp: Path) -> Path:
    return make_bundle(
        tmp / "b.zip",
        companies=GOOD_COMPANIES,
        projects=[project(20, "Unit 1", 10, capacity_mw="12345678901.5")],
    )


def null_name(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", companies=[company(1, None)])


def row_not_an_object(tmp: Path) -> Path:
    return make_bundle(tmp / "b.zip", companies=[[1, "Acme"]])


def row_not_json(tmp: Path) -> Path:
    good = make_bundle(tmp / "src", companies=GOOD_COMPANIES)
    data = (good / "data/companies.company.jsonl").read_bytes() + b"{oops\n"
    return make_bundle(
        tmp / "b.zip",
        files={"data/companies.company.jsonl": data},
        manifest={
            "tables": {
                "companies.company": {
                    "file": "data/companies.company.jsonl",
                    "rows": 3,
                    "sha256": hashlib.sha256(data).hexdigest(),
                },
                "companies.project": {
                    "file": "data/companies.project.jsonl",
                    "rows": 0,
                    "sha256": hashlib.sha256(b"").hexdigest(),
                },
            },
            "counts": None,
            "checksum": package.overall_checksum(
                {
                    "data/companies.company.jsonl": hashlib.sha256(data).hexdigest(),
                    "data/companies.project.jsonl": hashlib.sha256(b"").hexdigest(),
                }
            ),
        },
    )


def encrypted_member(tmp: Path) -> Path:
    members = _good_members(tmp)
    path = _zip_with(tmp / "b.zip", members)
    raw = bytearray(path.read_bytes())
    # Set the "encrypted" flag of every entry in the central directory.
    offset = raw.find(b"PK\x01\x02")
    while offset != -1:
        raw[offset + 8] |= 0x1
        offset = raw.find(b"PK\x01\x02", offset + 4)
    path.write_bytes(bytes(raw))
    return path


CASES: list[tuple[Callable[[Path], Path], str, int]] = [
    (not_a_zip, r"not a valid \.zip bundle", 400),
    (zip_slip, r"outside its folder: '\.\./evil\.txt'", 400),
    (zip_slip_nested, r"outside its folder", 400),
    (absolute_member, r"absolute path: '/tmp/evil\.txt'", 400),
    (windows_member, r"invalid name", 400),
    (symlink_member, r"link, which is not allowed: 'data/link'", 400),
    (symlink_in_folder, r"link, which is not allowed", 400),
    (duplicate_member, r"holds the file 'data/companies\.company\.jsonl' twice", 400),
    (unlisted_member, r"does not list: data/extra\.jsonl", 400),
    (wrong_checksum, r"checksum of data/companies\.company\.jsonl does not match", 400),
    (wrong_overall_checksum, r"checksum does not match its data", 400),
    (missing_manifest, r"no manifest\.json", 400),
    (manifest_a_list, r"manifest\.json must hold a JSON object", 400),
    (manifest_not_json, r"manifest\.json is not valid JSON", 400),
    (manifest_wrong_types, r"'include_users' is missing or not true or false", 400),
    (manifest_other_format, r"not a NukeWorks bundle", 400),
    (newer_format, r"format 2, newer than", 400),
    (unknown_table, r"tables this version does not know: companies\.reactor", 400),
    (missing_referenced_company, r"line 1: company_id 99 names no row of companies\.company", 400),
    (reference_of_wrong_type, r"company_id", 400),
    (huge_member, r"larger than the limit", 413),
    (newer_schema, r"newer version of NukeWorks \(migration companies\.0099", 400),
    (newer_app, r"newer version of NukeWorks \(migration reactors\.0001", 400),
    (duplicate_keys, r"line 2: the key 10 is used twice in companies\.company", 400),
    (duplicate_names, r"line 2: name 'Acme' appears twice", 400),
    (row_count_lies, r"holds 2 rows, manifest\.json says 1", 400),
    (unknown_column, r"unknown is_admin", 400),
    (invalid_choice, r"status 'melted' is not one of its choices", 400),
    (invalid_decimal, r"capacity_mw", 400),
    (null_name, r"name may not be empty", 400),
    (row_not_an_object, r"a row must be a JSON object", 400),
    (row_not_json, r"line 3: not valid JSON", 400),
    (encrypted_member, r"encrypted", 400),
]


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under `root` with its size and content hash (links as their target)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            path = Path(dirpath) / name
            if path.is_symlink():
                found[str(path)] = (-1, os.readlink(path))
            elif path.is_file():
                found[str(path)] = (
                    path.stat().st_size,
                    hashlib.sha256(path.read_bytes()).hexdigest(),
                )
    return found


@pytest.fixture(autouse=True)
def _small_limit(settings):
    settings.NUKEWORKS_BUNDLE_MAX_BYTES = 200_000


@pytest.mark.parametrize(("make", "reason", "status"), CASES, ids=[c[0].__name__ for c in CASES])
def test_a_hostile_bundle_is_refused_with_its_reason_and_nothing_changes(
    make, reason, status, tmp_path, make_database
):
    work = tmp_path / "work"
    work.mkdir()
    bundle = make(work)
    target = make_database(companies=[], users=[("admin", "pw", True)])
    alias = engines.register(str(target)).alias
    before_rows = dump_without_audit(target)
    before_disk = _tree(tmp_path)

    with pytest.raises(package.BundleError, match=reason) as refused:
        package.apply(package.load(bundle), alias)
    assert refused.value.status == status
    with pytest.raises(package.BundleError, match=reason):
        build_new_database("hostile", package=package.load(bundle), display_name="H", admin=None)

    assert dump_without_audit(target) == before_rows
    after_disk = _tree(tmp_path)
    # The refused build leaves only its lock file in its (new) folder; nothing else changes.
    lock = str(database_path("hostile").parent / ".build.lock")
    assert {
        k: v for k, v in after_disk.items() if k != lock and "-wal" not in k and "-shm" not in k
    } == {k: v for k, v in before_disk.items() if "-wal" not in k and "-shm" not in k}
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_a_member_larger_than_declared_is_cut_off(tmp_path, settings):
    """A zip entry whose declared size is small but whose data inflates further (a bomb)."""
    good = make_bundle(tmp_path / "src.zip", companies=GOOD_COMPANIES)
    members = {n: zipfile.ZipFile(good).read(n) for n in zipfile.ZipFile(good).namelist()}
    bomb = b'{"id": 1}\n' + b" " * 5_000_000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, bomb if name == "data/companies.company.jsonl" else content)
    raw = bytearray(buffer.getvalue())
    # Rewrite the declared uncompressed size of the data entry (central directory) to 100.
    name = b"data/companies.company.jsonl"
    offset = raw.find(b"PK\x01\x02")
    while offset != -1:
        length = int.from_bytes(raw[offset + 28 : offset + 30], "little")
        if raw[offset + 46 : offset + 46 + length] == name:
            raw[offset + 24 : offset + 28] = (100).to_bytes(4, "little")
        offset = raw.find(b"PK\x01\x02", offset + 4)
    path = tmp_path / "bomb.zip"
    path.write_bytes(bytes(raw))
    # zipfile stops inflating at the declared size (then the CRC fails); our reader also
    # refuses any byte past it: either way, refused without inflating the 5 MB.
    with pytest.raises(package.BundleError, match=r"damaged|larger than declared"):
        package.load(path)


def test_a_bundle_changed_after_validation_is_rolled_back(tmp_path, make_database, monkeypatch):
    """A folder edited between the validation pass and the write pass changes nothing."""
    folder = make_bundle(tmp_path / "folder", companies=GOOD_COMPANIES, projects=GOOD_PROJECTS)
    bundle = package.load(folder)
    target = make_database(companies=[])
    before = dump_without_audit(target)
    validate = package._validate

    def validate_then_tamper(*args, **kwargs):
        validate(*args, **kwargs)
        data = folder / "data" / "companies.project.jsonl"
        data.write_bytes(jsonl([project(20, "Unit 1", 12345)]))

    monkeypatch.setattr(package, "_validate", validate_then_tamper)
    with pytest.raises(package.BundleError, match="changed while it was being imported"):
        package.apply(bundle, engines.register(str(target)).alias)
    assert dump_without_audit(target) == before
