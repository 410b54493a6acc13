"""Seed packages and export bundles: one format, read, checked, applied and written here.

A bundle is a folder or a `.zip` holding:

    manifest.json                  what it is (below)
    data/companies.company.jsonl   one JSON object per row (bundles/tables.py)
    data/companies.project.jsonl
    data/accounts.user.jsonl       only when the manifest says include_users

manifest.json:

    {"format": "nukeworks-bundle", "format_version": 1,
     "name": "starter", "version": 1, "description": "…",
     "schema": [["accounts", "0001_initial"], ["companies", "0002_company_website"], …],
     "tables": {"companies.company": {"file": "data/companies.company.jsonl", "rows": 12}, …},
     "counts": {"companies.company": 12, …}, "include_users": false,
     "checksum": "<sha256 hex>", "created_at": "2026-…Z"}

Each table entry also carries its file's `sha256`; the bundle's `checksum` is SHA-256 over the
data files in sorted order of their names, each contributing the line `<name> <sha256 hex>\\n`
(so it is computed while the files are streamed). A seed package is an exported database
with a name and a version, stored as `seeds/<name>/<version>/`.

Reading (`load`, `find`, `available`) never creates or modifies a file. `apply` writes into a
migrated database with no domain rows, in one transaction, after validating every row and
every reference; `export` writes a new bundle and never overwrites one.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import io
import json
import os
import re
import shutil
import stat
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connections, models, transaction
from django.utils import timezone

from bundles import conf, schema
from bundles.tables import BY_LABEL, DOMAIN_TABLES, Table, tables_for

FORMAT = "nukeworks-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 1024 * 1024
MAX_MEMBERS = 1000
MAX_LINE_BYTES = 4 * 1024 * 1024
BATCH = 2000
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, int], None]


class BundleError(Exception):
    """A bundle cannot be read, applied or written; the message says why, for users.

    `status` is the HTTP status a page or the API answers with: 400 (invalid bundle or
    target), 413 (over a size limit), 404 (no such seed package).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


@dataclass
class Package:
    """A validated bundle: its manifest and where its files are."""

    name: str
    version: int | str
    description: str
    schema: list[list[str]]
    checksum: str
    include_users: bool
    counts: dict[str, int]
    path: Path
    created_at: str = ""
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """`name@version`, as commands and forms spell a seed package."""
        return f"{self.name}@{self.version}"

    @property
    def is_zip(self) -> bool:
        return self.path.is_file()


# -- reading ---------------------------------------------------------------------------------


def _safe_member_name(name: str) -> str:
    """Return `name` when it is a plain relative path inside the bundle, else raise."""
    if not name or "\\" in name or "\x00" in name:
        raise BundleError(f"The bundle holds a file with an invalid name: {name!r}.")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleError(f"The bundle holds a file with an absolute path: {name!r}.")
    parts = PurePosixPath(name).parts
    if any(p in ("..", ".") for p in parts) or ".." in name.split("/"):
        raise BundleError(f"The bundle holds a file outside its folder: {name!r}.")
    return name


class _Source:
    """Read access to the files of a bundle (folder or zip), with every limit enforced."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, zipfile.ZipInfo] = {}

    def __enter__(self) -> _Source:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            raise BundleError(f"No bundle at {self.path}.") from None
        except OSError as exc:
            raise BundleError(f"The bundle cannot be read: {exc.strerror}.") from None
        if stat.S_ISLNK(st.st_mode):
            # A link could point anywhere; the bundle's own path is taken as given only.
            st = os.stat(self.path)
        if stat.S_ISDIR(st.st_mode):
            return self
        if not stat.S_ISREG(st.st_mode):
            raise BundleError("The bundle is neither a folder nor a file.")
        if st.st_size > self.limit:
            raise BundleError(
                f"The bundle is larger than the limit ({st.st_size} > {self.limit} bytes).", 413
            )
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise BundleError(f"The file is not a valid .zip bundle ({exc}).") from None
        self._check_members()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._zip is not None:
            self._zip.close()

    def _check_members(self) -> None:
        assert self._zip is not None
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise BundleError(f"The bundle holds too many files ({len(infos)}).", 413)
        total = 0
        for info in infos:
            name = _safe_member_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BundleError(f"The bundle holds a link, which is not allowed: {name!r}.")
            if info.is_dir():
                continue
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                raise BundleError(f"The bundle holds a special file: {name!r}.")
            if info.flag_bits & 0x1:
                raise BundleError(f"The bundle holds an encrypted file: {name!r}.")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise BundleError(f"The bundle's file {name!r} uses an unsupported compression.")
            if name in self._members:
                raise BundleError(f"The bundle holds the file {name!r} twice.")
            if info.file_size > self.limit:
                raise BundleError(
                    f"The bundle's file {name!r} is larger than the limit "
                    f"({info.file_size} > {self.limit} bytes).",
                    413,
                )
            total += info.file_size
            if total > self.limit:
                raise BundleError(
                    f"The bundle's files are larger than the limit ({self.limit} bytes).", 413
                )
            self._members[name] = info

    def names(self) -> set[str]:
        """Return the names of the regular files of a zip bundle (empty for a folder)."""
        return set(self._members)

    def size(self, name: str) -> int:
        if self._zip is not None:
            return self._members[name].file_size
        return os.lstat(self._folder_file(name)).st_size

    def _folder_file(self, name: str) -> Path:
        _safe_member_name(name)
        path = self.path
        for part in PurePosixPath(name).parts:
            path = path / part
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                raise BundleError(f"The bundle has no file {name!r}.") from None
            if stat.S_ISLNK(st.st_mode):
                raise BundleError(f"The bundle holds a link, which is not allowed: {name!r}.")
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"The bundle's {name!r} is not a regular file.")
        if st.st_size > self.limit:
            raise BundleError(
                f"The bundle's file {name!r} is larger than the limit "
                f"({st.st_size} > {self.limit} bytes).",
                413,
            )
        return path

    def exists(self, name: str) -> bool:
        if self._zip is not None:
            return name in self._members
        try:
            self._folder_file(name)
        except BundleError:
            return os.path.lexists(self.path / name)
        return True

    @contextmanager
    def open(self, name: str, limit: int | None = None) -> Iterator[IO[bytes]]:
        """Open a file of the bundle for reading; reading past `limit` bytes raises."""
        limit = self.limit if limit is None else limit
        if self._zip is not None:
            if name not in self._members:
                raise BundleError(f"The bundle has no file {name!r}.")
            info = self._members[name]
            if info.file_size > limit:
                raise BundleError(f"The bundle's file {name!r} is too large.", 413)
            raw: IO[bytes] = self._zip.open(info)
            declared = info.file_size
        else:
            path = self._folder_file(name)
            # O_NOFOLLOW: a link swapped in after the check is refused by the kernel.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            raw = os.fdopen(fd, "rb")
            declared = os.fstat(fd).st_size
            if declared > limit:
                raw.close()
                raise BundleError(f"The bundle's file {name!r} is too large.", 413)
        try:
            yield _Bounded(raw, min(limit, declared), name)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise BundleError(f"The bundle's file {name!r} is damaged ({exc}).") from None
        finally:
            raw.close()


class _Bounded(io.RawIOBase):
    """A reader that refuses to return more than `limit` bytes (zip bombs, growing files)."""

    def __init__(self, raw: IO[bytes], limit: int, name: str) -> None:
        self._raw = raw
        self._left = limit
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(min(len(buffer), self._left + 1))
        if len(data) > self._left:
            raise BundleError(f"The bundle's file {self._name!r} is larger than declared.", 413)
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def _lines(handle: IO[bytes], name: str) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line) of a JSON Lines file; blank lines are skipped."""
    reader = io.BufferedReader(handle, 1024 * 1024)  # type: ignore[arg-type]
    number = 0
    while True:
        line = reader.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise BundleError(f"{name} line {number}: the line is too long.", 413)
        if line.strip():
            yield number, line


def overall_checksum(file_digests: dict[str, str]) -> str:
    """Return the bundle checksum from each data file's SHA-256 hex digest."""
    digest = hashlib.sha256()
    for name in sorted(file_digests):
        digest.update(f"{name} {file_digests[name]}\n".encode())
    return digest.hexdigest()


def _file_digest(source: _Source, name: str) -> str:
    digest = hashlib.sha256()
    with source.open(name) as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_checksums(source: _Source, tables: dict[str, dict[str, Any]], checksum: str) -> None:
    digests = {}
    for _label, entry in sorted(tables.items()):
        digests[entry["file"]] = found = _file_digest(source, entry["file"])
        if found != entry["sha256"]:
            raise BundleError(
                f"The checksum of {entry['file']} does not match its data: the bundle is "
                "damaged or was changed after export."
            )
    if overall_checksum(digests) != checksum:
        raise BundleError(
            "The bundle's checksum does not match its data: the bundle is damaged or was "
            "changed after export."
        )


def _read_manifest(source: _Source) -> dict[str, Any]:
    if not source.exists(MANIFEST):
        raise BundleError("The bundle has no manifest.json: it is not a NukeWorks bundle.")
    with source.open(MANIFEST, MANIFEST_MAX_BYTES) as handle:
        raw = handle.read()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"manifest.json is not valid JSON ({exc}).") from None
    if not isinstance(manifest, dict):
        raise BundleError("manifest.json must hold a JSON object.")
    return manifest


def _version_of(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BundleError("manifest.json: 'version' must be a number or a short name.")
    if isinstance(value, int):
        if value < 0:
            raise BundleError("manifest.json: 'version' must not be negative.")
        return value
    if not NAME_RE.match(value):
        raise BundleError(f"manifest.json: invalid version {value!r}.")
    return int(value) if value.isdigit() else value


def _validate_manifest(manifest: dict[str, Any], source: _Source) -> dict[str, Any]:
    def need(key: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = manifest.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BundleError(f"manifest.json: '{key}' is missing or not {what}.")
        return value

    if manifest.get("format") != FORMAT:
        raise BundleError("manifest.json: this is not a NukeWorks bundle ('format').")
    fmt = need("format_version", int, "a number")
    if fmt > FORMAT_VERSION:
        raise BundleError(
            f"The bundle uses format {fmt}, newer than this version of NukeWorks reads "
            f"({FORMAT_VERSION}). Update NukeWorks before importing it."
        )
    if fmt < 1:
        raise BundleError("manifest.json: invalid 'format_version'.")
    name = need("name", str, "a text")
    if not NAME_RE.match(name):
        raise BundleError(f"manifest.json: invalid name {name!r} (letters, digits, . _ -).")
    version = _version_of(manifest.get("version"))
    description = manifest.get("description", "")
    if not isinstance(description, str) or len(description) > 4000:
        raise BundleError("manifest.json: 'description' must be a text (4000 characters at most).")
    raw_schema = need("schema", list, "a list of [app, migration]")
    states: dict[str, str] = {}
    for item in raw_schema:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(x, str) and 0 < len(x) <= 200 for x in item)
        ):
            raise BundleError("manifest.json: 'schema' must be a list of [app, migration].")
        if item[0] in states:
            raise BundleError(f"manifest.json: 'schema' names the app {item[0]!r} twice.")
        states[item[0]] = item[1]
    include_users = need("include_users", bool, "true or false")
    tables = need("tables", dict, "an object")
    expected = {t.label for t in tables_for(include_users)}
    unknown = set(tables) - set(BY_LABEL)
    if unknown:
        raise BundleError(
            f"The bundle holds tables this version does not know: {', '.join(sorted(unknown))}."
        )
    if set(tables) != expected:
        missing = sorted(expected - set(tables))
        extra = sorted(set(tables) - expected)
        raise BundleError(
            "manifest.json: 'tables' does not match 'include_users'"
            + (f" (missing {', '.join(missing)})" if missing else "")
            + (f" (unexpected {', '.join(extra)})" if extra else "")
            + "."
        )
    counts: dict[str, int] = {}
    files: list[str] = []
    for label, entry in tables.items():
        table = BY_LABEL[label]
        if not isinstance(entry, dict):
            raise BundleError(f"manifest.json: the entry of {label} must be an object.")
        if entry.get("file") != table.file:
            raise BundleError(f"manifest.json: {label} must be stored in {table.file}.")
        rows = entry.get("rows")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise BundleError(f"manifest.json: the row count of {label} is invalid.")
        if not isinstance(entry.get("sha256"), str) or not _HEX64.match(entry["sha256"]):
            raise BundleError(f"manifest.json: the sha256 of {label} is missing or invalid.")
        counts[label] = rows
        files.append(table.file)
    if manifest.get("counts", counts) != counts:
        raise BundleError("manifest.json: 'counts' disagrees with 'tables'.")
    checksum = need("checksum", str, "a SHA-256 hex digest")
    if not _HEX64.match(checksum):
        raise BundleError("manifest.json: 'checksum' is not a SHA-256 hex digest.")
    created_at = manifest.get("created_at", "")
    if not isinstance(created_at, str):
        raise BundleError("manifest.json: 'created_at' must be a text.")
    for name_ in files:
        if not source.exists(name_):
            raise BundleError(f"The bundle has no file {name_} (listed in manifest.json).")
    if source._zip is not None:
        listed = set(files) | {MANIFEST}
        extra_files = sorted(source.names() - listed)
        if extra_files:
            raise BundleError(
                f"The bundle holds files manifest.json does not list: {', '.join(extra_files)}."
            )
    return {
        "name": name,
        "version": version,
        "description": description,
        "schema": [[app, mig] for app, mig in sorted(states.items())],
        "include_users": include_users,
        "tables": {label: dict(tables[label]) for label in tables},
        "counts": counts,
        "checksum": checksum,
        "created_at": created_at,
        "files": files,
    }


def load(path: str | Path, *, max_bytes: int | None = None) -> Package:
    """Open and validate the bundle at `path` (a folder or a .zip); raise BundleError.

    Checks the manifest, the file names (no absolute path, `..` or link), the sizes against
    `max_bytes` (default: settings.NUKEWORKS_BUNDLE_MAX_BYTES) and the checksum. The rows
    themselves are validated by `apply`, before it writes anything.
    """
    path = Path(path)
    limit = conf.max_bytes() if max_bytes is None else int(max_bytes)
    with _Source(path, limit) as source:
        info = _validate_manifest(_read_manifest(source), source)
        _verify_checksums(source, info["tables"], info["checksum"])
    return Package(
        name=info["name"],
        version=info["version"],
        description=info["description"],
        schema=info["schema"],
        checksum=info["checksum"],
        include_users=info["include_users"],
        counts=info["counts"],
        path=path,
        created_at=info["created_at"],
        tables=info["tables"],
    )


# -- seed packages ---------------------------------------------------------------------------


def _version_key(version: str) -> tuple[int, int, str]:
    return (1, int(version), "") if version.isdigit() else (0, 0, version)


def find(name: str, version: str | int | None = None) -> Package:
    """Return the seed package `name` at `version` (None: the highest) from the seeds folder."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BundleError(f"Invalid seed package name {name!r}.")
    folder = conf.seeds_dir() / name
    if version is None:
        versions = (
            sorted(
                (p.name for p in folder.iterdir() if p.is_dir() and NAME_RE.match(p.name)),
                key=_version_key,
            )
            if folder.is_dir()
            else []
        )
        if not versions:
            raise BundleError(f"No seed package named {name!r}.", 404)
        version = versions[-1]
    version = str(version)
    if not NAME_RE.match(version):
        raise BundleError(f"Invalid seed package version {version!r}.")
    path = folder / version
    if not path.is_dir():
        raise BundleError(f"No seed package {name}@{version}.", 404)
    package = load(path)
    if package.name != name or str(package.version) != version:
        raise BundleError(
            f"The seed package in {name}/{version} calls itself {package.ref}: fix its folder "
            "or its manifest."
        )
    return package


def available() -> list[Package]:
    """Return every valid seed package of the seeds folder, by name then version."""
    root = conf.seeds_dir()
    found: list[Package] = []
    if not root.is_dir():
        return found
    for name_dir in sorted(root.iterdir()):
        if not name_dir.is_dir() or not NAME_RE.match(name_dir.name):
            continue
        versions = sorted(
            (p.name for p in name_dir.iterdir() if p.is_dir() and NAME_RE.match(p.name)),
            key=_version_key,
        )
        for version in versions:
            try:
                found.append(find(name_dir.name, version))
            except BundleError:
                continue
    return found


# -- applying --------------------------------------------------------------------------------


def domain_rows(alias: str) -> int:
    """Return how many domain rows (companies, projects) the database `alias` holds."""
    return sum(t.model().objects.using(alias).count() for t in DOMAIN_TABLES)


class _Converter:
    """Turn a bundle's JSON row into database values, checking every field."""

    def __init__(self, table: Table, alias: str) -> None:
        self.table = table
        self.connection = connections[alias]
        self.fields = table.fields()
        self.columns = [f.attname for f in self.fields]
        self.column_set = set(self.columns)
        self.pairs = [(f, f.attname) for f in self.fields]
        self.choices = {f.attname: {c[0] for c in f.flatchoices} for f in self.fields if f.choices}

    def check_keys(self, row: Any, where: str) -> dict[str, Any]:
        if not isinstance(row, dict):
            raise BundleError(f"{where}: a row must be a JSON object.")
        if set(row) != self.column_set:
            missing = sorted(self.column_set - set(row))
            extra = sorted(set(row) - self.column_set)
            detail = (f"missing {', '.join(missing)}" if missing else "") + (
                ("; " if missing and extra else "")
                + (f"unknown {', '.join(extra)}" if extra else "")
            )
            raise BundleError(f"{where}: the row's columns do not match ({detail}).")
        return row

    def values(self, row: dict[str, Any], where: str, *, check: bool = True) -> list[Any]:
        """Return the row's Python values, validated as the model's fields do (no queries).

        `check=False` (the write pass, after the validation pass) only converts the values.
        """
        if not check:
            return [None if row[a] is None else f.to_python(row[a]) for f, a in self.pairs]
        out = []
        for f in self.fields:
            value = row[f.attname]
            try:
                if value is None:
                    if not f.null:
                        raise ValidationError("may not be empty (null)")
                else:
                    if isinstance(value, dict | list) or (
                        isinstance(value, bool) and not isinstance(f, models.BooleanField)
                    ):
                        raise ValidationError(f"has the wrong type ({type(value).__name__})")
                    value = f.to_python(value)
                    if value == "" and not f.blank:
                        raise ValidationError("may not be blank")
                    if f.choices and value not in self.choices[f.attname]:
                        raise ValidationError(f"{value!r} is not one of its choices")
                    f.run_validators(value)
            except ValidationError as exc:
                message = "; ".join(str(m) for m in exc.messages)
                raise BundleError(f"{where}: {f.attname} {message}.") from None
            except (TypeError, ValueError, decimal.InvalidOperation, OverflowError) as exc:
                raise BundleError(f"{where}: {f.attname} is invalid ({exc}).") from None
            out.append(value)
        return out

    def db_values(self, values: list[Any]) -> list[Any]:
        conn = self.connection
        return [
            None if v is None else f.get_db_prep_save(v, conn)
            for f, v in zip(self.fields, values, strict=True)
        ]


def _rows(
    source: _Source, table: Table, steps: list[schema.Step], digest: Any
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, row) of one table file, brought forward, feeding `digest` its bytes."""
    name = table.file
    with source.open(name) as handle:
        reader = _Digesting(handle, digest)
        for number, line in _lines(reader, name):  # type: ignore[arg-type]
            where = f"{name} line {number}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise BundleError(f"{where}: not valid JSON ({exc}).") from None
            if isinstance(row, dict):
                for step in steps:
                    row = step(table.label, row)
            yield where, row


class _Digesting(io.RawIOBase):
    def __init__(self, raw: IO[bytes], digest: Any) -> None:
        self._raw = raw
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        self._digest.update(data)
        buffer[: len(data)] = data
        return len(data)


def _plan(package: Package, include_users: bool) -> list[schema.Step]:
    apps = {t.app_label for t in tables_for(include_users)}
    try:
        plan = schema.upgrade_plan(dict(map(tuple, package.schema)), apps)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    return schema.steps(plan)


def _check_target(alias: str, include_users: bool) -> None:
    apps = {t.app_label for t in tables_for(include_users)}
    try:
        pending = schema.pending_for(alias, apps)
    except DatabaseError as exc:
        raise BundleError(f"The target database cannot be read ({exc}).") from None
    if pending:
        raise BundleError(
            f"The target database needs migration first ({', '.join(pending)} pending)."
        )
    if domain_rows(alias):
        raise BundleError(
            "The target database already holds companies or projects: a bundle is only "
            "imported into a database without domain data."
        )


def _validate(
    package: Package,
    source: _Source,
    steps: list,
    alias: str,
    progress: Progress | None = None,
    total: int = 0,
) -> None:
    """Read every row once: columns, values, unique keys and references, row counts, checksums.

    Every table of the package is read (users too, even when they are not applied), in
    dependency order, so a reference is resolvable when the table it names was read before.
    """
    ids: dict[str, set[int]] = {}
    digests: dict[str, str] = {}
    done = 0
    for table in tables_for(package.include_users):
        converter = _Converter(table, alias)
        digest = hashlib.sha256()
        seen: set[int] = set()
        uniques: dict[str, set[Any]] = {f.attname: set() for f in converter.fields[1:] if f.unique}
        if table.keep_existing_by:
            uniques.setdefault(table.keep_existing_by, set())
        count = 0
        for where, row in _rows(source, table, steps, digest):
            values = converter.values(converter.check_keys(row, where), where)
            count += 1
            done += 1
            if progress and not done % BATCH:
                progress(done, total)
            pk = values[0]
            if not isinstance(pk, int) or pk in seen:
                raise BundleError(f"{where}: the key {pk!r} is used twice in {table.label}.")
            seen.add(pk)
            for column, taken in uniques.items():
                value = row[column]
                if value in taken:
                    raise BundleError(
                        f"{where}: {column} {value!r} appears twice in {table.label}."
                    )
                taken.add(value)
            for column, target in table.refs.items():
                ref = row[column]
                if ref is not None and ref not in ids.get(target, ()):
                    raise BundleError(
                        f"{where}: {column} {ref!r} names no row of {target} in the bundle."
                    )
        expected = package.counts[table.label]
        if count != expected:
            raise BundleError(f"{table.file} holds {count} rows, manifest.json says {expected}.")
        ids[table.label] = seen
        digests[table.file] = digest.hexdigest()
        if digests[table.file] != package.tables[table.label].get("sha256"):
            raise BundleError(
                f"The checksum of {table.file} does not match its data (changed since loaded?)."
            )
    if overall_checksum(digests) != package.checksum:
        raise BundleError("The bundle's checksum does not match its data (changed since loaded?).")


def _next_id(cursor: Any, table_name: str) -> int:
    """Return the first primary key never used in `table_name` (SQLite AUTOINCREMENT aware)."""
    cursor.execute(f'SELECT MAX("id") FROM "{table_name}"')
    highest = cursor.fetchone()[0] or 0
    try:
        cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table_name])
        row = cursor.fetchone()
    except DatabaseError:
        row = None
    return max(highest, (row[0] if row else 0) or 0) + 1


def apply(
    package: Package,
    alias: str,
    *,
    progress: Progress | None = None,
    include_users: bool | None = None,
) -> dict[str, int]:
    """Apply `package` to the migrated database `alias`, which holds no domain data yet.

    Every row gets a new primary key and every reference the new key of its row. The rows
    are validated first (columns, values, unique keys, references, counts, checksum); then
    everything is written in one transaction. Users come along when the package has them and
    `include_users` is not False; a user whose username exists in the target is kept as it
    is (the bundle's is skipped). `progress(done, total)` counts rows read: each row of the
    package once while validating, and each applied row again while writing. Returns rows
    inserted per table label.
    """
    users = package.include_users if include_users is None else bool(include_users)
    if users and not package.include_users:
        raise BundleError("The package holds no users.")
    tables = tuple(t for t in tables_for(users))
    steps = _plan(package, users)
    _check_target(alias, users)
    # Progress counts rows read: every row of the package once to validate it, then the
    # applied rows again to write them.
    checked = sum(package.counts.values())
    total = checked + sum(package.counts[t.label] for t in tables)
    with _Source(package.path, conf.max_bytes()) as source:
        _validate(package, source, steps, alias, progress, total)
        try:
            with transaction.atomic(using=alias):
                # Checked again under the write lock: nobody added data meanwhile.
                if domain_rows(alias):
                    raise BundleError("The target database received data meanwhile.")
                counts = _write(package, source, tables, steps, alias, checked, total, progress)
        except IntegrityError as exc:
            raise BundleError(f"The bundle's data conflicts with the database ({exc}).") from None
    if progress:
        progress(total, total)
    return counts


def _write(
    package: Package,
    source: _Source,
    tables: tuple[Table, ...],
    steps: list,
    alias: str,
    done: int,
    total: int,
    progress: Progress | None,
) -> dict[str, int]:
    """Insert every row with a new key and remapped references (inside the caller's atomic).

    The rows were validated by `_validate`; their bytes are hashed again here, so a bundle
    changed between the two passes (a folder someone edits) fails and rolls back.
    """
    mapping: dict[str, dict[int, int]] = {}
    counts: dict[str, int] = {}
    qn = connections[alias].ops.quote_name
    with connections[alias].cursor() as cursor:
        for table in tables:
            converter = _Converter(table, alias)
            model = table.model()
            db_table = model._meta.db_table
            columns = converter.columns
            sql = (
                f"INSERT INTO {qn(db_table)} ({', '.join(qn(c) for c in columns)}) "
                f"VALUES ({', '.join(['%s'] * len(columns))})"
            )
            refs = [(columns.index(column), target) for column, target in table.refs.items()]
            keep = table.keep_existing_by
            existing: set[Any] = set()
            if keep:
                existing = set(model.objects.using(alias).values_list(keep, flat=True))
            new_id = _next_id(cursor, db_table)
            keys: dict[int, int] = {}
            batch: list[list[Any]] = []
            inserted = 0
            digest = hashlib.sha256()
            try:
                for where, row in _rows(source, table, steps, digest):
                    values = converter.values(row, where, check=False)
                    done += 1
                    if keep and row[keep] in existing:
                        continue
                    keys[values[0]] = new_id
                    values[0] = new_id
                    new_id += 1
                    for index, target in refs:
                        if values[index] is not None:
                            values[index] = mapping[target][values[index]]
                    batch.append(converter.db_values(values))
                    if len(batch) >= BATCH:
                        cursor.executemany(sql, batch)
                        inserted += len(batch)
                        batch.clear()
                        if progress:
                            progress(done, total)
            except (KeyError, TypeError, ValueError, ValidationError, decimal.InvalidOperation):
                raise BundleError(_CHANGED) from None
            if digest.hexdigest() != package.tables[table.label]["sha256"]:
                raise BundleError(_CHANGED)
            if batch:
                cursor.executemany(sql, batch)
                inserted += len(batch)
            mapping[table.label] = keys
            counts[table.label] = inserted
            if progress:
                progress(done, total)
    return counts


_CHANGED = "The bundle changed while it was being imported: nothing was imported."


# -- exporting -------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        if timezone.is_aware(value):
            value = value.astimezone(datetime.UTC)
        return value.isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@contextmanager
def _read_snapshot(alias: str) -> Iterator[None]:
    """Read every table from one consistent state, without blocking writers (WAL).

    The connection's transactions are IMMEDIATE (they take the write lock), so a plain
    atomic() would hold writers off for the whole export: a DEFERRED read transaction is
    begun by hand instead, in autocommit mode, and ended when the export is done.
    """
    connection = connections[alias]
    if connection.in_atomic_block:
        yield
        return
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("BEGIN DEFERRED")
    try:
        yield
    finally:
        # Only reads happened: ending the transaction either way changes nothing.
        try:
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        except DatabaseError:
            pass


def _check_name(name: str, version: str | int) -> int | str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BundleError(f"Invalid package name {name!r} (letters, digits, . _ -).")
    return _version_of(version)


def export(
    alias: str,
    target: str | Path,
    *,
    name: str,
    version: str | int,
    description: str = "",
    include_users: bool = False,
    progress: Progress | None = None,
) -> Package:
    """Write the domain data of `alias` as a bundle at `target` (a .zip, else a folder).

    Rows are streamed table by table (never all in memory). The bundle is written beside the
    target under a temporary name and moved into place at the end; an existing target is
    never overwritten.
    """
    version = _check_name(name, version)
    target = Path(target)
    if os.path.lexists(target):
        raise BundleError(f"{target} already exists: choose another name.")
    if not target.parent.is_dir():
        raise BundleError(f"The folder {target.parent} does not exist.")
    tables = tables_for(include_users)
    apps = {t.app_label for t in tables}
    try:
        pending = schema.pending_for(alias, apps)
    except DatabaseError as exc:
        raise BundleError(f"The database cannot be read ({exc}).") from None
    if pending:
        raise BundleError(
            f"The database needs migration before it can be exported ({', '.join(pending)})."
        )
    as_zip = target.suffix.lower() == ".zip"
    temp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        with _read_snapshot(alias):
            state = schema.applied_leaves(alias)
            counts = {t.label: t.model().objects.using(alias).count() for t in tables}
            total = sum(counts.values())
            if as_zip:
                with zipfile.ZipFile(temp, "x", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
                    digests = _write_tables(
                        alias,
                        tables,
                        lambda n: zf.open(_zip_info(n), "w", force_zip64=True),
                        total,
                        progress,
                    )
                    manifest = _manifest(
                        name, version, description, include_users, state, tables, counts, digests
                    )
                    zf.writestr(_zip_info(MANIFEST), json.dumps(manifest, indent=2) + "\n")
            else:
                (temp / "data").mkdir(parents=True)
                digests = _write_tables(
                    alias,
                    tables,
                    lambda n: open(temp / n, "xb"),  # noqa: SIM115
                    total,
                    progress,
                )
                manifest = _manifest(
                    name, version, description, include_users, state, tables, counts, digests
                )
                (temp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if as_zip:
            # link() refuses an existing name: a file made meanwhile is never replaced.
            os.link(temp, target)
            os.unlink(temp)
        else:
            os.rename(temp, target)
    except FileExistsError:
        raise BundleError(f"{target} already exists: choose another name.") from None
    except OSError as exc:
        raise BundleError(f"The bundle could not be written: {exc.strerror or exc}.") from None
    finally:
        if os.path.lexists(temp):
            if temp.is_dir():
                shutil.rmtree(temp, ignore_errors=True)
            else:
                temp.unlink(missing_ok=True)
    if progress:
        progress(total, total)
    return load(target)


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=timezone.now().timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info


def _write_tables(
    alias: str,
    tables: tuple[Table, ...],
    opener: Callable[[str], IO[bytes]],
    total: int,
    progress: Progress | None,
) -> dict[str, str]:
    """Stream every table into its file; return each file's SHA-256 hex digest."""
    digests: dict[str, str] = {}
    done = 0
    encoder = json.JSONEncoder(default=_json_default, ensure_ascii=False, separators=(",", ":"))
    for table in tables:
        columns = table.columns()
        digest = hashlib.sha256()
        query = table.model().objects.using(alias).order_by("pk").values_list(*columns)
        with opener(table.file) as out:
            buffer: list[str] = []
            for values in query.iterator(chunk_size=BATCH):
                buffer.append(encoder.encode(dict(zip(columns, values, strict=True))))
                if len(buffer) >= BATCH:
                    _flush(out, buffer, digest)
                    done += BATCH
                    if progress:
                        progress(done, total)
            done += len(buffer)
            _flush(out, buffer, digest)
        digests[table.file] = digest.hexdigest()
        if progress:
            progress(done, total)
    return digests


def _flush(out: IO[bytes], buffer: list[str], digest: Any) -> None:
    if buffer:
        data = ("\n".join(buffer) + "\n").encode("utf-8")
        out.write(data)
        digest.update(data)
        buffer.clear()


def _manifest(
    name: str,
    version: int | str,
    description: str,
    include_users: bool,
    state: dict[str, str],
    tables: tuple[Table, ...],
    counts: dict[str, int],
    digests: dict[str, str],
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "description": description,
        "schema": [[app, mig] for app, mig in sorted(state.items())],
        "tables": {
            t.label: {"file": t.file, "rows": counts[t.label], "sha256": digests[t.file]}
            for t in tables
        },
        "counts": counts,
        "include_users": include_users,
        "checksum": overall_checksum(digests),
        "created_at": timezone.now().astimezone(datetime.UTC).isoformat(),
    }
