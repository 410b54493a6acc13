"""Seed packages and bundles: load and validate, export -> import, the starter package, keys."""

from __future__ import annotations

import json
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from bundles import package, schema
from bundles.newdb import (
    HashedPassword,
    build_new_database,
    database_path,
    temp_path_for,
)
from dbselect import engines
from dbselect.models import SystemSetting
from nukeworks.companies.models import Company, Project
from tests.bundle_factory import company, domain_snapshot, make_bundle, project, rows_of

STARTER = Path(__file__).resolve().parent.parent / "seeds" / "starter" / "1"


@pytest.fixture(autouse=True)
def _shipped_seeds(settings):
    settings.NUKEWORKS_SEEDS_DIR = STARTER.parent.parent


def _alias(path: Path) -> str:
    return engines.register(str(path)).alias


def _fill(path: Path) -> None:
    """Companies and projects with every kind of value (null, decimals, dates, unicode)."""
    alias = _alias(path)
    a = Company.objects.using(alias).create(
        name="Ålborg Atomkraft", country="Danmark", is_vendor=True, website="https://a.example"
    )
    b = Company.objects.using(alias).create(name="Bolt Nuclear", is_operator=True, notes="x\ny")
    Company.objects.using(alias).create(name="Lonely Co")
    Project.objects.using(alias).create(
        name="Unit 1", company=a, status="operating", capacity_mw="1234.5", cod_date="2020-02-29"
    )
    Project.objects.using(alias).create(name="Unit 1", company=b)  # same name, other company
    Project.objects.using(alias).create(name="Unit 2", company=b, capacity_mw=None, notes="é")
    connections[alias].close()


def test_the_starter_package_loads_and_is_listed():
    starter = package.find("starter", 1)
    assert (starter.name, starter.version, starter.include_users) == ("starter", 1, False)
    assert starter.counts == {"companies.company": 16, "companies.project": 14}
    assert starter.description and starter.path == STARTER
    assert package.find("starter", None).ref == "starter@1" == package.find("starter", "1").ref
    assert [p.ref for p in package.available()] == ["starter@1"]


def test_find_picks_the_highest_version_and_refuses_bad_names(tmp_path, settings, make_database):
    settings.NUKEWORKS_SEEDS_DIR = tmp_path / "seeds"
    for version in (2, 10, 9):
        (tmp_path / "seeds" / "acme" / str(version)).mkdir(parents=True)
        make_bundle(tmp_path / "seeds" / "acme" / str(version), name="acme", version=version)
    assert package.find("acme", None).version == 10
    assert [p.ref for p in package.available()] == ["acme@2", "acme@9", "acme@10"]
    for bad in ("../etc", "", ".hidden", "a/b"):
        with pytest.raises(package.BundleError, match="Invalid seed package name"):
            package.find(bad, 1)
    with pytest.raises(package.BundleError, match="Invalid seed package version"):
        package.find("acme", "../2")
    with pytest.raises(package.BundleError, match="No seed package acme@3") as info:
        package.find("acme", 3)
    assert info.value.status == 404
    # A folder whose manifest names another package is refused (and left out of the list).
    (tmp_path / "seeds" / "acme" / "11").mkdir()
    make_bundle(tmp_path / "seeds" / "acme" / "11", name="other", version=11)
    with pytest.raises(package.BundleError, match="calls itself other@11"):
        package.find("acme", 11)
    assert "acme@11" not in [p.ref for p in package.available()]


def test_export_then_import_into_a_new_database_gives_identical_domain_data(
    make_database, tmp_path
):
    source = make_database(companies=["Acme"], users=[("admin", "pw", True)])
    _fill(source)
    for target in (tmp_path / "out.zip", tmp_path / "out-folder"):
        exported = package.export(_alias(source), target, name="copy", version=7)
        assert exported.counts == {"companies.company": 4, "companies.project": 3}
        assert exported.path == target and exported.is_zip == (target.suffix == ".zip")
        reread = package.load(target)
        assert reread.checksum == exported.checksum and reread.schema == exported.schema
    copy = build_new_database(
        "copy", package=package.load(tmp_path / "out.zip"), display_name="Copy", admin=None
    )
    assert domain_snapshot(copy) == domain_snapshot(source)
    # Both bundles of the same data hold the same files, byte for byte.
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        for name in ("data/companies.company.jsonl", "data/companies.project.jsonl"):
            assert zf.read(name) == (tmp_path / "out-folder" / name).read_bytes()


def test_export_writes_schema_state_counts_and_checksum_in_the_manifest(make_database, tmp_path):
    source = make_database(companies=["Acme", "Bolt"])
    package.export(_alias(source), tmp_path / "b.zip", name="b", version="v2", description="d")
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert sorted(zf.namelist()) == [
            "data/companies.company.jsonl",
            "data/companies.project.jsonl",
            "manifest.json",
        ]
    assert manifest["name"] == "b" and manifest["version"] == "v2"
    assert manifest["description"] == "d" and manifest["include_users"] is False
    assert dict(map(tuple, manifest["schema"]))["companies"] == "0003_list_indexes"
    assert dict(map(tuple, manifest["schema"])) == schema.code_leaves()
    assert manifest["counts"] == {"companies.company": 2, "companies.project": 0}
    assert len(manifest["checksum"]) == 64 and manifest["created_at"].endswith("+00:00")


def test_export_never_overwrites_and_leaves_no_partial_file(make_database, tmp_path):
    source = make_database(companies=["Acme"])
    (tmp_path / "taken.zip").write_bytes(b"keep me")
    with pytest.raises(package.BundleError, match="already exists"):
        package.export(_alias(source), tmp_path / "taken.zip", name="x", version=1)
    assert (tmp_path / "taken.zip").read_bytes() == b"keep me"
    with pytest.raises(package.BundleError, match="Invalid package name"):
        package.export(_alias(source), tmp_path / "n.zip", name="../x", version=1)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != "") == ["taken.zip"]


def test_an_old_database_is_not_exported_before_it_is_migrated(old_database, tmp_path):
    with pytest.raises(package.BundleError, match=r"needs migration.*companies\.0003"):
        package.export(_alias(old_database), tmp_path / "o.zip", name="o", version=1)
    assert not (tmp_path / "o.zip").exists()


def test_the_starter_package_applies_with_new_keys_and_remapped_references(tmp_path):
    starter = package.find("starter", 1)
    rows = {
        label: [json.loads(line) for line in (STARTER / f"data/{label}.jsonl").open()]
        for label in ("companies.company", "companies.project")
    }
    package_company_ids = {r["id"] for r in rows["companies.company"]}
    package_project_ids = {r["id"] for r in rows["companies.project"]}
    owner_of = {
        r["name"]: {c["id"]: c["name"] for c in rows["companies.company"]}[r["company_id"]]
        for r in rows["companies.project"]
    }

    path = build_new_database(
        "demo", package=starter, display_name="Demo", admin=("boss", "boss-pw-123")
    )

    companies = dict(rows_of(path, "SELECT id, name FROM companies_company"))
    projects = rows_of(path, "SELECT id, name, company_id FROM companies_project")
    assert len(companies) == 16 and len(projects) == 14
    assert not set(companies) & package_company_ids  # no key of the package leaks
    assert not {pk for pk, _, _ in projects} & package_project_ids
    for _, name, company_id in projects:
        assert company_id not in package_company_ids
        assert companies[company_id] == owner_of[name]  # each reference points to its row
    settings = dict(rows_of(path, "SELECT key, value FROM system_settings"))
    assert settings["seed_name"] == "starter" and settings["seed_version"] == "1"
    assert settings["seed_status"] == "ready" and settings["db_display_name"] == "Demo"
    assert rows_of(path, "SELECT username, is_staff, is_superuser FROM accounts_user") == [
        ("boss", 1, 1)
    ]
    assert sorted(p.name for p in path.parent.iterdir()) == [
        ".build.lock",
        "nukeworks.sqlite",
        "snapshots",
    ]


def test_applying_twice_continues_the_key_sequence_instead_of_reusing_ids(make_database):
    target = make_database(companies=["Temp"])
    alias = _alias(target)
    Company.objects.using(alias).all().delete()  # ids 1 stays used in sqlite_sequence
    package.apply(package.find("starter", 1), alias)
    assert min(Company.objects.using(alias).values_list("id", flat=True)) == 2


def test_a_bundle_from_an_older_schema_is_brought_forward(make_database, tmp_path):
    old_state = {**schema.code_leaves(), "companies": "0001_initial"}
    rows = [company(501, "Old One"), company(502, "Old Two")]
    for row in rows:
        del row["website"]  # companies 0001 had no website
    bundle = make_bundle(
        tmp_path / "old.zip",
        companies=rows,
        projects=[project(9, "P", 502)],
        schema_state=old_state,
    )
    target = make_database(companies=[])
    counts = package.apply(package.load(bundle), _alias(target))
    assert counts == {"companies.company": 2, "companies.project": 1}
    assert rows_of(target, "SELECT name, website FROM companies_company ORDER BY name") == [
        ("Old One", ""),
        ("Old Two", ""),
    ]


def test_every_migration_of_a_data_app_says_how_its_data_is_brought_forward():
    graph = schema.code_graph()
    for app in ("companies", "accounts"):
        for node in graph.forwards_plan((app, schema.code_leaves()[app])):
            if node[0] == app:
                assert node in schema.UPGRADES, f"bundles.schema.UPGRADES lacks {node}"


def test_users_come_only_when_asked_and_never_replace_an_existing_account(make_database, tmp_path):
    source = make_database(
        companies=["Acme"], users=[("admin", "source-pw", True), ("clerk", "clerk-pw", False)]
    )
    bundle = package.export(
        _alias(source), tmp_path / "u.zip", name="u", version=1, include_users=True
    )
    assert bundle.include_users and bundle.counts["accounts.user"] == 2

    without = make_database(companies=[], users=[("admin", "target-pw", True)])
    assert package.apply(bundle, _alias(without), include_users=False) == {
        "companies.company": 1,
        "companies.project": 0,
    }
    assert rows_of(without, "SELECT username FROM accounts_user") == [("admin",)]

    target = make_database(companies=[], users=[("admin", "target-pw", True)])
    counts = package.apply(bundle, _alias(target))
    assert counts["accounts.user"] == 1  # clerk; the target's admin is kept
    users = get_user_model().objects.using(_alias(target))
    assert users.get(username="admin").check_password("target-pw")
    assert users.get(username="clerk").check_password("clerk-pw")
    assert users.get(username="clerk").last_db_path is None

    plain = package.export(_alias(source), tmp_path / "p.zip", name="p", version=1)
    with pytest.raises(package.BundleError, match="holds no users"):
        package.apply(plain, _alias(make_database(companies=[])), include_users=True)


def test_apply_refuses_a_database_with_domain_data_or_pending_migrations(
    make_database, old_database
):
    starter = package.find("starter", 1)
    full = make_database(companies=["Already Here"])
    with pytest.raises(package.BundleError, match="already holds companies or projects"):
        package.apply(starter, _alias(full))
    with pytest.raises(package.BundleError, match="needs migration first"):
        package.apply(starter, _alias(old_database))
    assert rows_of(full, "SELECT name FROM companies_company") == [("Already Here",)]


def test_progress_is_reported_up_to_its_total(make_database, tmp_path):
    source = make_database(companies=[f"C{i}" for i in range(5)])
    seen: list[tuple[int, int]] = []
    bundle = package.export(
        _alias(source),
        tmp_path / "p.zip",
        name="p",
        version=1,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[-1] == (5, 5)
    seen.clear()
    package.apply(bundle, _alias(make_database(companies=[])), progress=lambda *a: seen.append(a))
    assert seen[-1] == (10, 10)  # 5 rows validated, then 5 written
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_export_streams_rows_instead_of_loading_the_table(make_database, tmp_path):
    source = make_database(companies=[])
    alias = _alias(source)
    Company.objects.using(alias).bulk_create(
        Company(name=f"Company {i:06d}", notes="n" * 200) for i in range(30_000)
    )
    tracemalloc.start()
    try:
        package.export(alias, tmp_path / "big.zip", name="big", version=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 30,000 rows of ~300 bytes are ~9 MB of text alone and far more as Python objects.
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"


def test_build_new_database_refuses_an_existing_label_and_cleans_a_stale_build(
    make_database, tmp_path
):
    starter = package.find("starter", 1)
    existing = make_database(companies=["Mine"], label="taken")
    before = existing.read_bytes()
    with pytest.raises(package.BundleError, match="already exists"):
        build_new_database("taken", package=starter, display_name="X", admin=None)
    assert existing.read_bytes() == before

    # An interrupted run left its temporary file (and a -wal): the next run starts over.
    final = database_path("retry")
    final.parent.mkdir(parents=True)
    temp = temp_path_for(final)
    temp.write_bytes(b"half-built garbage")
    Path(f"{temp}-wal").write_bytes(b"stale wal")
    path = build_new_database("retry", package=starter, display_name="Retry", admin=None)
    assert path == final and not temp.exists() and not Path(f"{temp}-wal").exists()
    assert len(rows_of(path, "SELECT id FROM companies_company")) == 16

    # A retried job that already finished gets its result back, untouched.
    before = path.read_bytes()
    again = build_new_database(
        "retry", package=starter, display_name="Retry", admin=None, exist_ok=True
    )
    assert again == path and path.read_bytes() == before
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()
    with pytest.raises(package.BundleError, match="already exists"):
        build_new_database("retry", package=None, display_name="Retry", admin=None, exist_ok=True)

    for bad in ("../up", "a/b", "", ".hidden", "x" * 41):
        with pytest.raises(package.BundleError, match="Invalid label"):
            build_new_database(bad, package=None, display_name="X", admin=None)


def test_build_new_database_without_a_package_and_with_a_copied_login(make_database):
    source = make_database(users=[("me", "my-secret-pw", True)])
    me = get_user_model().objects.using(_alias(source)).get(username="me")
    path = build_new_database(
        "empty", package=None, display_name="Empty", admin=("me", HashedPassword(me.password))
    )
    alias = _alias(path)
    assert not Company.objects.using(alias).exists()
    copied = get_user_model().objects.using(alias).get(username="me")
    assert copied.check_password("my-secret-pw") and copied.is_admin
    assert SystemSetting.get_value("seed_status", using=alias) == "ready"
    assert SystemSetting.get_value("seed_name", using=alias) == ""


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    bad = make_bundle(
        tmp_path / "bad.zip", companies=[company(1, "A")], projects=[project(1, "P", 2)]
    )
    with pytest.raises(package.BundleError, match="company_id 2 names no row"):
        build_new_database("broken", package=package.load(bad), display_name="B", admin=None)
    folder = database_path("broken").parent
    assert sorted(p.name for p in folder.iterdir()) == [".build.lock"]
