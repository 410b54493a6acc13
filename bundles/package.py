"""Seed packages and export bundles: one format, read, checked, applied and written here.

A bundle is a folder or a `.zip` holding:

    manifest.json                        what it is (below)
    data/companies.company.jsonl         one JSON object per row (bundles/tables.py)
    data/companies.project.jsonl
    data/attachments.attachment.jsonl    only when the database has attachments
    data/accounts.user.jsonl             only when the manifest says include_users
    payloads/<sha256>                    the content of each attachment, once per SHA-256

manifest.json:

    {"format": "nukeworks-bundle", "format_version": 1,
     "name": "starter", "version": 1, "description": "…",
     "schema": [["accounts", "0001_initial"], ["companies", "0002_company_website"], …],
     "tables": {"companies.company": {"file": "data/companies.company.jsonl", "rows": 12}, …},
     "counts": {"companies.company": 12, …}, "include_users": false,
     "payloads": {"<sha256 hex>": <size in bytes>, …},
     "checksum": "<sha256 hex>", "created_at": "2026-…Z"}

Each table entry also carries its file's `sha256`; the bundle's `checksum` is SHA-256 over the
data files and the payload files in sorted order of their names, each contributing the line
`<name> <sha256 hex>\\n` (so it is computed while the files are streamed). A payload file is
named by the SHA-256 of its content: its line is `payloads/<sha256> <sha256>`, and its content
is checked against its name while it is streamed into the target database's payload store.
A bundle without attachments has no "payloads" key, no payloads/ folder and no attachments
table: exactly the format before attachments existed, which older versions still read.

A seed package is an exported database with a name and a version, stored as
`seeds/<name>/<version>/`.

Reading (`load`, `find`, `available`) never creates or modifies a file; it checks the data
files' checksums and that every payload file is there with its declared size (its content is
hashed by `apply`, which reads it anyway). `apply` writes into a migrated database with no
domain rows, in one transaction, after validating every row and every reference: the payload
files are put into the target's store first (content verified, under the store's lock, held
until the rows naming them are committed); rows naming a payload that is neither in the
bundle nor already in the target's store are refused. `export` writes a new bundle and never
overwrites one; it refuses a database whose rows name a payload file that is missing.
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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connections, models, transaction
from django.utils import timezone

from bundles import conf, schema
from bundles.tables import BY_LABEL, DOMAIN_TABLES, Table, tables_for, tables_in
from dbselect import catalog
from dbselect.layout import PAYLOADS_FOLDER
from payloads.store import PayloadError, PayloadStore, database_for_alias

FORMAT = "nukeworks-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 1024 * 1024
MAX_MEMBERS = 1000
# Attachment files a bundle may carry (payloads/<sha256> members, counted apart).
MAX_PAYLOADS = 100_000
PAYLOADS_DIR = "payloads"
MAX_LINE_BYTES = 4 * 1024 * 1024
BATCH = 2000
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PAYLOAD_MEMBER = re.compile(r"^payloads/[0-9a-f]{64}$")
_CHUNK = 1024 * 1024

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
    # SHA-256 -> size of every attachment file the bundle carries (payloads/<sha256>).
    payloads: dict[str, int] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """`name@version`, as commands and forms spell a seed package."""
        return f"{self.name}@{self.version}"

    @property
    def is_zip(self) -> bool:
        return self.path.is_file()


def payload_member(sha256: str) -> str:
    """Return the name of the bundle's file holding the payload `sha256`."""
    return f"{PAYLOADS_DIR}/{sha256}"


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
        payloads = sum(1 for info in infos if _PAYLOAD_MEMBER.match(info.filename))
        if len(infos) - payloads > MAX_MEMBERS or payloads > MAX_PAYLOADS:
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


def _verify_checksums(
    source: _Source, tables: dict[str, dict[str, Any]], checksum: str, payloads: dict[str, int]
) -> None:
    # A payload file's digest is its name; its content is verified when it is applied.
    digests = {payload_member(sha): sha for sha in payloads}
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
    allowed = {t.label for t in tables_for(include_users)}
    required = {t.label for t in tables_for(include_users) if not t.optional}
    unknown = set(tables) - set(BY_LABEL)
    if unknown:
        raise BundleError(
            f"The bundle holds tables this version does not know: {', '.join(sorted(unknown))}."
        )
    if not required <= set(tables) <= allowed:
        missing = sorted(required - set(tables))
        extra = sorted(set(tables) - allowed)
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
    payloads = _validate_payloads(manifest.get("payloads", {}), source)
    for name_ in files:
        if not source.exists(name_):
            raise BundleError(f"The bundle has no file {name_} (listed in manifest.json).")
    if source._zip is not None:
        listed = set(files) | {MANIFEST} | {payload_member(sha) for sha in payloads}
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
        "payloads": payloads,
    }


def _payload_limit(source: _Source) -> int:
    """Return the size limit of one payload file of the bundle read through `source`."""
    return min(source.limit, conf.payload_max_bytes())


def _validate_payloads(raw: Any, source: _Source) -> dict[str, int]:
    """Check the manifest's "payloads" ({sha256: size}) and that every file is there."""
    if not isinstance(raw, dict):
        raise BundleError("manifest.json: 'payloads' must be an object of SHA-256: size.")
    if len(raw) > MAX_PAYLOADS:
        raise BundleError(f"The bundle holds too many attachment files ({len(raw)}).", 413)
    limit = _payload_limit(source)
    payloads: dict[str, int] = {}
    for sha, size in raw.items():
        if not isinstance(sha, str) or not _HEX64.match(sha):
            raise BundleError(f"manifest.json: {sha!r} in 'payloads' is not a SHA-256 hex digest.")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise BundleError(f"manifest.json: the size of payload {sha} is invalid.")
        if size > limit:
            raise BundleError(
                f"The bundle's attachment file {sha} is larger than the limit "
                f"({size} > {limit} bytes).",
                413,
            )
        name = payload_member(sha)
        if not source.exists(name):
            raise BundleError(f"The bundle has no file {name} (listed in manifest.json).")
        found = source.size(name)
        if found != size:
            raise BundleError(
                f"The bundle's {name} holds {found} bytes, manifest.json says {size}: the "
                "bundle is damaged or was changed after export."
            )
        payloads[sha] = size
    return payloads


def load(path: str | Path, *, max_bytes: int | None = None) -> Package:
    """Open and validate the bundle at `path` (a folder or a .zip); raise BundleError.

    Checks the manifest, the file names (no absolute path, `..` or link), the sizes against
    `max_bytes` (default: settings.NUKEWORKS_BUNDLE_MAX_BYTES) and the checksum, and that
    every payload file listed is there with its size (at most the attachments' MAX_BYTES).
    The rows themselves, and the payloads' content, are validated by `apply`, before it
    writes anything.
    """
    path = Path(path)
    limit = conf.max_bytes() if max_bytes is None else int(max_bytes)
    with _Source(path, limit) as source:
        info = _validate_manifest(_read_manifest(source), source)
        _verify_checksums(source, info["tables"], info["checksum"], info["payloads"])
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
        payloads=info["payloads"],
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


def _tables_of(package: Package, include_users: bool) -> tuple[Table, ...]:
    """Return the tables `package` carries (users only when `include_users`), in order."""
    return tables_in(package.tables, include_users)


def _plan(package: Package, include_users: bool) -> list[schema.Step]:
    apps = {t.app_label for t in _tables_of(package, include_users)}
    try:
        plan = schema.upgrade_plan(dict(map(tuple, package.schema)), apps)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    return schema.steps(plan)


def _check_target(alias: str, tables: tuple[Table, ...]) -> None:
    apps = {t.app_label for t in (*tables, *DOMAIN_TABLES)}
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
    *,
    payloads: dict[str, int] | None = None,
) -> None:
    """Read every row once: columns, values, unique keys and references, row counts, checksums.

    Every table of the package is read (users too, even when they are not applied), in
    dependency order, so a reference is resolvable when the table it names was read before.
    The payloads the rows name are collected into `payloads` (SHA-256 -> size).
    """
    ids: dict[str, set[int]] = {}
    digests: dict[str, str] = {payload_member(sha): sha for sha in package.payloads}
    named = payloads if payloads is not None else {}
    done = 0
    for table in _tables_of(package, package.include_users):
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
            if table.one_of and sum(row[c] is not None for c in table.one_of) != 1:
                raise BundleError(f"{where}: exactly one of {', '.join(table.one_of)} is needed.")
            if table.payload:
                _payload_of_row(package, row, table.payload, where, named)
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


def _payload_of_row(
    package: Package,
    row: dict[str, Any],
    columns: tuple[str, str],
    where: str,
    named: dict[str, int],
) -> None:
    """Check the payload a row names (its hash and size); add it to `named`."""
    sha, size = row[columns[0]], row[columns[1]]
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise BundleError(f"{where}: {columns[0]} is not a SHA-256 in lower-case hex.")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise BundleError(f"{where}: {columns[1]} must be a positive number of bytes.")
    if named.setdefault(sha, size) != size:
        raise BundleError(f"{where}: the payload {sha} is named with two different sizes.")
    carried = package.payloads.get(sha)
    if carried is not None and carried != size:
        raise BundleError(
            f"{where}: {columns[1]} {size} does not match the size of payloads/{sha} ({carried})."
        )


def _is_postgres(alias: str) -> bool:
    return connections[alias].vendor == "postgresql"


def _next_id(cursor: Any, table_name: str, *, postgres: bool = False) -> int:
    """Return the first primary key never used in `table_name` (SQLite AUTOINCREMENT aware;
    on PostgreSQL, the column's sequence counts too)."""
    cursor.execute(f'SELECT MAX("id") FROM "{table_name}"')
    highest = cursor.fetchone()[0] or 0
    if postgres:
        # Never a failing query here: it would abort the caller's transaction.
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [f'"{table_name}"'])
        sequence = cursor.fetchone()[0]
        used = 0
        if sequence:
            cursor.execute(
                "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END "
                f"FROM {sequence}"
            )
            used = cursor.fetchone()[0] or 0
        return max(highest, used) + 1
    try:
        cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table_name])
        row = cursor.fetchone()
    except DatabaseError:
        row = None
    return max(highest, (row[0] if row else 0) or 0) + 1


def _reset_sequences(alias: str, tables: tuple[Table, ...]) -> None:
    """After rows were inserted with their keys given (PostgreSQL): move each table's key
    sequence past them, so the next row the application adds gets a free key."""
    from django.core.management.color import no_style

    connection = connections[alias]
    statements = connection.ops.sequence_reset_sql(no_style(), [t.model() for t in tables])
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def database_of(alias: str) -> str:
    """Return the database behind the Django alias `alias`: its file, or the target
    `postgresql:<label>` of a PostgreSQL database of the catalog (payloads.store)."""
    try:
        return database_for_alias(alias)
    except PayloadError as exc:
        raise BundleError(str(exc)) from None


def apply(
    package: Package,
    alias: str,
    *,
    progress: Progress | None = None,
    include_users: bool | None = None,
    database: str | os.PathLike[str] | None = None,
) -> dict[str, int]:
    """Apply `package` to the migrated database `alias`, which holds no domain data yet.

    Every row gets a new primary key and every reference the new key of its row (a null
    reference stays null). The rows are validated first (columns, values, unique keys,
    references, counts, checksum); then the attachment files the rows name are put into the
    payload store of `database` (default: the alias's file; a database built under a
    temporary name passes its final name), each verified against its SHA-256 while it is
    streamed, and everything is written in one transaction, committed while the store's
    lock is held. Users come along when the package has them and `include_users` is not
    False; a user whose username exists in the target is kept as it is (the bundle's is
    skipped). `progress(done, total)` counts rows read: each row of the package once while
    validating, and each applied row again while writing. Returns rows inserted per table
    label.
    """
    users = package.include_users if include_users is None else bool(include_users)
    if users and not package.include_users:
        raise BundleError("The package holds no users.")
    tables = _tables_of(package, users)
    steps = _plan(package, users)
    _check_target(alias, tables)
    # Progress counts rows read: every row of the package once to validate it, then the
    # applied rows again to write them.
    checked = sum(package.counts.values())
    total = checked + sum(package.counts[t.label] for t in tables)
    with _Source(package.path, conf.max_bytes()) as source:
        named: dict[str, int] = {}
        _validate(package, source, steps, alias, progress, total, payloads=named)
        store = PayloadStore.for_database(database or database_of(alias))
        try:
            with store.writing() if named else nullcontext():
                _put_payloads(package, source, store, named)
                with transaction.atomic(using=alias):
                    # Checked again under the write lock: nobody added data meanwhile.
                    if domain_rows(alias):
                        raise BundleError("The target database received data meanwhile.")
                    counts = _write(package, source, tables, steps, alias, checked, total, progress)
                    if _is_postgres(alias):
                        _reset_sequences(alias, tables)
        except IntegrityError as exc:
            raise BundleError(f"The bundle's data conflicts with the database ({exc}).") from None
        except PayloadError as exc:
            raise BundleError(f"The attachment files could not be stored: {exc}", 503) from None
    if progress:
        progress(total, total)
    return counts


def _put_payloads(
    package: Package, source: _Source, store: PayloadStore, named: dict[str, int]
) -> None:
    """Put every payload the rows name into `store` (call inside `store.writing()`).

    A payload the bundle carries is streamed from it and verified against its name before it
    takes that name in the store; one it does not carry must already be in the store, with
    the size the rows give it. Content already stored is not written again (PayloadStore.put).
    """
    for sha, size in sorted(named.items()):
        if sha in package.payloads:
            continue
        found = store.size_of(sha)
        if found != size:
            raise BundleError(
                f"The bundle's rows name the attachment file {sha}, which is neither in the "
                "bundle nor in the target database's attachments store: nothing was imported."
            )
    limit = _payload_limit(source)
    for sha in sorted(set(named) & set(package.payloads)):
        name = payload_member(sha)
        try:
            with source.open(name, limit) as handle:
                stored = store.put(_verified_chunks(handle, sha, name), max_bytes=limit)
        except OSError as exc:
            raise BundleError(
                f"The attachment file {sha} could not be stored: {exc.strerror or exc}. "
                "Nothing was imported."
            ) from None
        if stored.sha256 != sha:  # pragma: no cover - _verified_chunks refuses it first
            raise BundleError(_tampered(name))


def _tampered(name: str) -> str:
    return (
        f"The content of {name} does not match its SHA-256: the bundle is damaged or was "
        "changed after export. Nothing was imported."
    )


def _verified_chunks(handle: IO[bytes], sha: str, name: str) -> Iterator[bytes]:
    """Yield the content of `handle`; raise BundleError at its end if its SHA-256 is not `sha`.

    Raised from inside PayloadStore.put's loop, so the content never takes its name in the
    store (put removes its temporary file).
    """
    digest = hashlib.sha256()
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != sha:
        raise BundleError(_tampered(name))


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
            new_id = _next_id(cursor, db_table, postgres=_is_postgres(alias))
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
    begun by hand instead, in autocommit mode, and ended when the export is done. On
    PostgreSQL the same is a REPEATABLE READ, READ ONLY transaction (one snapshot of every
    table; writers are never blocked).
    """
    connection = connections[alias]
    if connection.in_atomic_block:
        yield
        return
    connection.ensure_connection()
    begin = (
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        if connection.vendor == "postgresql"
        else "BEGIN DEFERRED"
    )
    with connection.cursor() as cursor:
        cursor.execute(begin)
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

    Rows are streamed table by table (never all in memory), then every attachment file the
    rows name, once each, streamed from the database's payload store and checked against
    its SHA-256 on the way. The store is held (`writing`, shared) for the whole export, so
    the collector cannot remove a file the exported rows name. A row whose file is missing
    or damaged fails the export (nothing is written). The bundle is written beside the
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
    source_file = database_of(alias)
    store = PayloadStore.for_database(source_file)
    try:
        # No store folder yet: no payload either (an upload made meanwhile is not in the
        # snapshot read below).
        with store.writing() if store.root.is_dir() else nullcontext(), _read_snapshot(alias):
            state = schema.applied_leaves(alias)
            counts = {t.label: t.model().objects.using(alias).count() for t in tables}
            # An optional table without rows is left out: the format before it existed.
            tables = tuple(t for t in tables if counts[t.label] or not t.optional)
            counts = {t.label: counts[t.label] for t in tables}
            sizes = _payloads_to_export(alias, tables, store, source_file)
            total = sum(counts.values())
            if as_zip:
                with zipfile.ZipFile(temp, "x", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:

                    def member(n: str) -> IO[bytes]:
                        return zf.open(_zip_info(n), "w", force_zip64=True)

                    digests = _write_tables(alias, tables, member, total, progress)
                    digests.update(_write_payloads(store, sizes, member, source_file))
                    manifest = _manifest(
                        name, version, description, include_users, state, tables, counts, digests
                    )
                    if sizes:
                        manifest["payloads"] = sizes
                    zf.writestr(_zip_info(MANIFEST), json.dumps(manifest, indent=2) + "\n")
            else:
                (temp / "data").mkdir(parents=True)
                if sizes:
                    (temp / PAYLOADS_DIR).mkdir()

                def new_file(n: str) -> IO[bytes]:
                    return open(temp / n, "xb")

                digests = _write_tables(alias, tables, new_file, total, progress)
                digests.update(_write_payloads(store, sizes, new_file, source_file))
                manifest = _manifest(
                    name, version, description, include_users, state, tables, counts, digests
                )
                if sizes:
                    manifest["payloads"] = sizes
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
    except PayloadError as exc:  # the store is being collected (StoreBusy)
        raise BundleError(f"Nothing was exported: {exc}", 503) from None
    finally:
        if os.path.lexists(temp):
            if temp.is_dir():
                shutil.rmtree(temp, ignore_errors=True)
            else:
                temp.unlink(missing_ok=True)
    if progress:
        progress(total, total)
    return load(target)


def _dbcheck_hint(database: str) -> str:
    """Return the dbcheck command line for the database `database` (a file or a target)."""
    if catalog.is_target(database):
        return f"`manage.py dbcheck {catalog.label_of(database)}`"
    path = Path(database)
    in_catalog = PayloadStore.for_database(path).root == path.parent / PAYLOADS_FOLDER
    # dbcheck takes a catalog label or the path of any other file.
    return f"`manage.py dbcheck {path.parent.name if in_catalog else path}`"


def _payloads_to_export(
    alias: str, tables: tuple[Table, ...], store: PayloadStore, database: str
) -> dict[str, int]:
    """Return SHA-256 -> size of every payload the rows of `tables` name, each file checked.

    Raise BundleError, before anything is written, when a file is missing or its size is
    not the one its rows give.
    """
    sizes: dict[str, int] = {}
    for table in tables:
        if not table.payload:
            continue
        query = table.model().objects.using(alias).order_by().values_list(*table.payload)
        for sha, size in query.distinct().iterator(chunk_size=BATCH):
            if sizes.setdefault(sha, size) != size:
                raise BundleError(
                    f"The database's attachments name the file {sha} with two sizes: check it "
                    f"with {_dbcheck_hint(database)}. Nothing was exported."
                )
            if len(sizes) > MAX_PAYLOADS:
                raise BundleError(
                    f"The database has more than {MAX_PAYLOADS} attachment files, more than a "
                    "bundle carries. Nothing was exported.",
                    413,
                )
    for sha, size in sorted(sizes.items()):
        try:
            found = store.size_of(sha)
        except PayloadError:  # not a SHA-256 at all
            found = None
        if found is None:
            raise BundleError(
                f"The attachment file {sha} is missing from the database's attachments store "
                f"({store.root}); see {_dbcheck_hint(database)}. Nothing was exported."
            )
        if found != size:
            raise BundleError(
                f"The attachment file {sha} is damaged ({found} bytes, its rows say {size}); "
                f"see {_dbcheck_hint(database)}. Nothing was exported."
            )
    return sizes


def _write_payloads(
    store: PayloadStore,
    sizes: dict[str, int],
    opener: Callable[[str], IO[bytes]],
    database: str,
) -> dict[str, str]:
    """Stream each payload into its member `payloads/<sha256>`; return name -> SHA-256."""
    digests: dict[str, str] = {}
    for sha in sorted(sizes):
        name = payload_member(sha)
        digest = hashlib.sha256()
        try:
            handle = store.open(sha)
        except FileNotFoundError:
            raise BundleError(
                f"The attachment file {sha} disappeared from the database's attachments store; "
                f"see {_dbcheck_hint(database)}. Nothing was exported."
            ) from None
        with handle, opener(name) as out:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha:
            raise BundleError(
                f"The attachment file {sha} is damaged (its content no longer matches its "
                f"SHA-256); see {_dbcheck_hint(database)}. Nothing was exported."
            )
        digests[name] = sha
    return digests


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
