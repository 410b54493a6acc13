"""manage.py dbinspect <label|path>: what is inside a database file (inspection.contents) or a
PostgreSQL database of the catalog (inspection.postgres)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import filesizeformat

from dbselect.catalog.postgres import describe_error
from inspection import postgres
from inspection.contents import Inspection, TableDetail, inspect_file, table_detail
from inspection.targets import Target, TargetError, resolve


def _size(value: int | None) -> str:
    return "—" if value is None else str(filesizeformat(value)).replace("\xa0", " ")


def _rows(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


class Command(BaseCommand):
    help = (
        "Show what is inside a database file without changing it: tables with row counts and "
        "sizes, indexes, triggers and views (listed, never run), page size, journal mode, free "
        "pages, schema state, display name and seed. The argument is a label of "
        "databases/<label>/ or the path of a SQLite file (opened read-only, never created), or "
        "the label of a PostgreSQL database of the catalog (read in one read-only "
        "transaction; sizes from pg_total_relation_size). Without a section option it shows "
        "the summary and the tables."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("database", help="A label of databases/<label>/, or a file's path.")
        parser.add_argument("--tables", action="store_true", help="Tables and indexes.")
        parser.add_argument("--schema", action="store_true", help="Every CREATE statement.")
        parser.add_argument("--table", metavar="NAME", help="One table: columns, indexes, keys.")
        parser.add_argument("--triggers", action="store_true", help="Triggers (and views).")
        parser.add_argument(
            "--json",
            action="store_true",
            help="Everything as one JSON object (exact row counts; --table adds that table).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            target = resolve(options["database"])
        except TargetError as exc:
            raise CommandError(str(exc)) from None
        try:
            inspection = _inspect(target)
        except sqlite3.Error as exc:
            raise CommandError(f"SQLite cannot read {target.path}: {exc}") from None
        except psycopg.Error as exc:
            raise CommandError(f"{target.label}: {describe_error(exc)}") from None
        detail = None
        if options["table"]:
            try:
                detail = _table_detail(target, inspection, options["table"])
            except LookupError as exc:
                raise CommandError(str(exc)) from None
            except sqlite3.Error as exc:
                raise CommandError(f"SQLite cannot read {options['table']}: {exc}") from None
            except psycopg.Error as exc:
                raise CommandError(f"{options['table']}: {describe_error(exc)}") from None
        if options["json"]:
            data = inspection.as_dict()
            if detail is not None:
                data["table_detail"] = detail.as_dict()
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True))
            return
        self._summary(inspection)
        sections = any(options[k] for k in ("tables", "schema", "table", "triggers"))
        if options["tables"] or not sections:
            self._tables(inspection, with_indexes=bool(options["tables"]))
        if options["triggers"]:
            self._triggers(inspection)
        if options["schema"]:
            self._schema(inspection)
        if detail is not None:
            self._detail(detail)

    def _postgres_summary(self, i: Inspection) -> None:
        self._line("Size", f"{_size(i.file_bytes)} (pg_database_size)")
        self._line(
            "PostgreSQL",
            f"{i.server}, server {i.server_version}, encoding {i.encoding}",
        )

    def _line(self, title: str, value: str) -> None:
        self.stdout.write(f"{title:<14}{value}")

    def _summary(self, i: Inspection) -> None:
        self._line("Database", i.path + (f"  (label {i.label})" if i.label else ""))
        self._line("Display name", i.display_name or "—")
        schema = i.schema_state_label
        if i.schema_problem:
            schema += f": {i.schema_problem}"
        self._line("Schema", schema)
        if i.seed_name or i.seed_version or i.seed_status:
            seed = " ".join(x for x in (i.seed_name, i.seed_version) if x) or "—"
            self._line("Seed", seed + (f" (status {i.seed_status})" if i.seed_status else ""))
        else:
            self._line("Seed", "— (not made from a seed package)")
        if i.is_postgres:
            self._postgres_summary(i)
        else:
            wal = f" + {_size(i.wal_bytes)} in -wal" if i.wal_bytes else ""
            self._line("File", f"{_size(i.file_bytes)}{wal}")
            self._line(
                "Pages",
                f"{i.page_count:,} pages of {i.page_size:,} bytes; free list "
                f"{i.freelist_count:,} ({_size(i.freelist_bytes)})",
            )
            self._line(
                "SQLite",
                f"journal mode {i.journal_mode}, encoding {i.encoding}, auto_vacuum "
                f"{i.auto_vacuum}, user_version {i.user_version} (SQLite {i.sqlite_version})",
            )
        sizes = {
            "dbstat": "sizes from dbstat",
            "estimate": "sizes ESTIMATED",
            postgres.SIZES_SOURCE: "sizes from pg_total_relation_size, indexes included",
        }.get(i.sizes_source, "sizes not computed")
        self._line(
            "Contents",
            f"{len(i.tables)} tables, {i.total_rows:,} rows, {len(i.indexes)} indexes, "
            f"{len(i.triggers)} triggers, {len(i.views)} views ({sizes})",
        )
        if (i.triggers or i.views) and i.is_postgres:
            self.stdout.write(
                self.style.WARNING(
                    "              This database defines triggers or views: NukeWorks creates "
                    "none (listed with --triggers, never run here)."
                )
            )
        elif i.triggers or i.views:
            self.stdout.write(
                self.style.WARNING(
                    "              This file defines triggers or views: NukeWorks creates none "
                    "and refuses such files (listed with --triggers, never run)."
                )
            )
        for note in i.notes:
            self.stdout.write(f"              {note}")

    def _tables(self, i: Inspection, *, with_indexes: bool) -> None:
        width = max([len(t.name) for t in i.tables] + [5])
        self.stdout.write("")
        self.stdout.write(f"{'table':<{width}}  {'rows':>12}  {'size':>10}  note")
        for t in i.tables:
            note = t.note or ("" if t.kind == "table" else t.kind)
            self.stdout.write(
                f"{t.name:<{width}}  {_rows(t.rows):>12}  {_size(t.bytes):>10}  {note}".rstrip()
            )
        if not with_indexes:
            return
        width = max([len(x.name) for x in i.indexes] + [5])
        self.stdout.write("")
        self.stdout.write(f"{'index':<{width}}  {'size':>10}  on table")
        for x in i.indexes:
            flags = ", ".join(
                f for f in ("unique" if x.unique else "", "automatic" if x.automatic else "") if f
            )
            self.stdout.write(
                f"{x.name:<{width}}  {_size(x.bytes):>10}  {x.table}"
                + (f" ({flags})" if flags else "")
            )

    def _triggers(self, i: Inspection) -> None:
        self.stdout.write("")
        self.stdout.write(f"Triggers ({len(i.triggers)}; listed, never run):")
        for t in i.triggers:
            self.stdout.write(f"  {t.name} on {t.table}")
            self.stdout.write(f"    {t.sql}")
        if i.views:
            self.stdout.write(f"Views ({len(i.views)}; never queried):")
            for v in i.views:
                self.stdout.write(f"  {v.name}")
                self.stdout.write(f"    {v.sql}")

    def _schema(self, i: Inspection) -> None:
        self.stdout.write("")
        for item in (*i.tables, *i.indexes, *i.views, *i.triggers):
            if item.sql:
                self.stdout.write(item.sql.rstrip(";") + ";")

    def _detail(self, d: TableDetail) -> None:
        t = d.table
        self.stdout.write("")
        self.stdout.write(f"Table {t.name} ({t.kind}): {_rows(t.rows)} rows, {_size(t.bytes)}")
        for c in d.columns:
            flags = [
                c.type or "(no type)",
                "NOT NULL" if c.not_null else "",
                f"PRIMARY KEY ({c.primary_key})" if c.primary_key else "",
                f"DEFAULT {c.default}" if c.default is not None else "",
                {1: "hidden", 2: "generated", 3: "generated, stored"}.get(c.hidden, ""),
            ]
            self.stdout.write(f"  {c.name}  " + " ".join(f for f in flags if f))
        for x in d.indexes:
            kind = {"pk": "primary key", "u": "unique constraint", "c": "index"}.get(
                x["origin"], x["origin"]
            )
            self.stdout.write(
                f"  index {x['name']} ({kind}{', unique' if x['unique'] else ''}"
                f"{', partial' if x['partial'] else ''}): {', '.join(x['columns'])}"
            )
        for k in d.foreign_keys:
            refs = ", ".join(r or "(primary key)" for r in k.references)
            self.stdout.write(
                f"  foreign key ({', '.join(k.columns)}) -> {k.table} ({refs}) "
                f"on delete {k.on_delete}"
            )
        for tr in d.triggers:
            self.stdout.write(f"  trigger {tr.name} (listed, never run)")


def _inspect(target: Target) -> Inspection:
    if target.entry is not None:
        return postgres.inspect(target.entry, label=target.label)
    return inspect_file(target.path, target.header, label=target.label)


def _table_detail(target: Target, inspection: Inspection, name: str) -> TableDetail:
    if target.entry is not None:
        return postgres.table_detail(target.entry, inspection, name)
    return table_detail(target.path, target.header, inspection, name)
