"""``python -m bqfidelity.checksql --schemas FILE PATH...``: check the SQL users write with GoogleSQL.

BigQuery's own analyzer (GoogleSQL / ZetaSQL, ``bqfidelity.zsql``) checks each file offline against
prod's schemas, and every problem is printed as ``file:line: message`` (exit status 1).

- Seeds, ``<dir>/seeds/<dataset>/<table>.sql``: one SELECT whose rows fill ``<dataset>.<table>``.
  It must analyze, and its output columns must be the table's columns: the same names and types
  (ARRAY and STRUCT members included), as envsync's contract check demands before a reseed.
- Migrations, ``<dir>/migrations/<version>_<name>.sql``: analyzed in version order, statement by
  statement, each against prod's schemas as the earlier statements and migrations left them: the DDL
  an accepted statement holds (CREATE TABLE/VIEW, ALTER TABLE ADD/DROP/RENAME COLUMN, SET DATA TYPE,
  RENAME TO, DROP) changes the catalog the next one is analyzed against. A migration must start with
  its phase (``-- envsync: phase=expand`` or ``contract``). ALTER or DROP of a table the catalog does
  not hold, ADD of a column it has, DROP or RENAME of a column it lacks are reported too (GoogleSQL
  leaves those to BigQuery's execution). The first problem stops the migrations: later ones would be
  analyzed against a catalog that misses its changes.
- Any other ``.sql`` file: every statement in it must analyze (each against prod's schemas; tables
  created by an earlier statement of the file are not known to later ones).

The schema file is JSON: ``{"project": "...", "tables": {"<dataset>.<table>": [<BigQuery schema
fields>] | {"fields": [...], "ingestion_time": true}}}`` (a bare ``{"<dataset>.<table>": [...]}``
mapping is accepted too). ``scripts/prod_schemas.py`` writes one from prod as discovered;
``sql/schemas/prod.json`` is the demo prod's, for offline use.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bqfidelity.zsql import types
from bqfidelity.zsql.googlesql import AnalysisError, GoogleSQL, TableDef


@dataclass
class Problem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class Schemas:
    """Tables of a schema file, looked up as GoogleSQL spells their names."""

    def __init__(self, data: dict[str, Any]) -> None:
        tables = data.get("tables") if isinstance(data.get("tables"), dict) else data
        self.project = data.get("project") if isinstance(data.get("project"), str) else None
        self.tables: dict[str, TableDef] = {}
        for key, value in tables.items():
            if not isinstance(value, (list, dict)) or key.count(".") != 1:
                continue
            if isinstance(value, dict):
                table = TableDef(value.get("fields") or [], bool(value.get("ingestion_time")))
            else:
                table = TableDef(value)
            self.tables[key.casefold()] = table

    @classmethod
    def load(cls, path: Path) -> Schemas:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def lookup(self, parts: list[str]) -> TableDef | None:
        if len(parts) == 3 and (self.project is None or parts[0] == self.project):
            parts = parts[1:]
        if len(parts) != 2:
            return None
        return self.tables.get(".".join(parts).casefold())

    def fields(self, key: str) -> list[dict[str, Any]] | None:
        table = self.tables.get(key.casefold())
        return list(table.fields) if table else None


def _line(text: str, offset: int | None) -> int:
    """1-based line of a byte offset of text."""
    if offset is None:
        return 1
    return text.encode()[:offset].count(b"\n") + 1


def _first_code_line(text: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        code = line.strip()
        if code and not code.startswith("--") and not code.startswith("#"):
            return number
    return 1


def seed_key(path: Path) -> str | None:
    """``<dataset>.<table>`` of a seed path (``.../seeds/<dataset>/<table>.sql``), else None."""
    if path.suffix == ".sql" and path.parent.parent.name == "seeds":
        return f"{path.parent.name}.{path.stem}"
    return None


def _normal(type_name: str) -> str:
    return type_name.casefold()


def check_seed(analyzer: GoogleSQL, schemas: Schemas, path: Path, key: str) -> tuple[int, list[Problem]]:
    """Analyze a seed and compare its output with its table; returns (statements analyzed, problems)."""
    text = path.read_text(encoding="utf-8")
    try:
        analysis = analyzer.analyze(text, schemas.lookup, locations=True)
    except AnalysisError as error:
        return 1, [Problem(path, error.line or _first_code_line(text), error.message)]
    if analysis.kind != "QueryStmt":
        return 1, [Problem(path, _first_code_line(text), f"a seed must be one SELECT, not {analysis.kind}")]
    prod = schemas.fields(key)
    if prod is None:
        return 1, [Problem(path, 1, f"{key}: no such table in prod's schemas")]
    seed = {
        name.casefold(): (name, types.type_name(kind), _line(text, offset))
        for (name, kind), offset in zip(
            analysis.columns, analysis.offsets or [None] * len(analysis.columns), strict=False
        )
    }
    problems = []
    last = max((line for _, _, line in seed.values()), default=1)
    for field in prod:
        name = types.get(field, "name")
        expected = types.schema_type_name(field)
        found = seed.get(name.casefold())
        if found is None:
            problems.append(Problem(path, last, f"{key}: column {name} is in prod but not in the seed"))
        elif _normal(found[1]) != _normal(expected):
            problems.append(
                Problem(path, found[2], f"{key}: column {name} is {expected} in prod but {found[1]} in the seed")
            )
    names = {types.get(field, "name").casefold() for field in prod}
    problems += [
        Problem(path, line, f"{key}: column {name} is in the seed but not in prod")
        for folded, (name, _, line) in seed.items()
        if folded not in names
    ]
    return 1, problems


def check_file(analyzer: GoogleSQL, schemas: Schemas, path: Path) -> tuple[int, list[Problem]]:
    """Analyze every statement of a SQL file; returns (statements analyzed, problems)."""
    text = path.read_text(encoding="utf-8")
    size = len(text.encode())
    position, count = 0, 0
    while position < size and text.encode()[position:].strip(b" \t\r\n;"):
        count += 1
        try:
            analysis = analyzer.analyze(text, schemas.lookup, start=position)
        except AnalysisError as error:
            # The rest of the file cannot be split reliably after a refusal: stop at the first one.
            return count, [Problem(path, error.line or _line(text, position), error.message)]
        if analysis.next_position is None or analysis.next_position <= position:
            break
        position = analysis.next_position
    return count, []


_MIGRATION = re.compile(r"^([0-9]{1,9})_[a-z0-9][a-z0-9_]*\.sql$")
_PHASE = re.compile(r"^--\s*envsync:\s*phase\s*=\s*(expand|contract)\s*$")


def is_migration(path: Path) -> bool:
    return path.suffix == ".sql" and path.parent.name == "migrations"


def _path_key(parts: list[str]) -> list[str]:
    flat = [piece for part in parts for piece in part.split(".")]
    return flat


class Catalog(Schemas):
    """prod's schemas as the migrations analyzed so far changed them."""

    def __init__(self, schemas: Schemas) -> None:
        self.project = schemas.project
        self.tables = dict(schemas.tables)

    def key(self, name_path: Any) -> str | None:
        parts = _path_key(list(name_path))
        if len(parts) == 3 and (self.project is None or parts[0] == self.project):
            parts = parts[1:]
        return ".".join(parts).casefold() if len(parts) == 2 else None

    def apply(self, analysis: Any) -> str | None:
        """Change the catalog as an accepted DDL statement does; a problem GoogleSQL leaves to
        execution (a missing table, an existing column...) is returned as a message."""
        from bqfidelity.zsql.googlesql import _leaf

        statement, kind = analysis.resolved, analysis.kind
        if kind in ("CreateTableStmt", "CreateTableAsSelectStmt"):
            base = statement.parent
            key = self.key(base.parent.name_path)
            mode = (
                base.parent.DESCRIPTOR.fields_by_name["create_mode"]
                .enum_type.values_by_number[base.parent.create_mode]
                .name
            )
            if key in self.tables and mode == "CREATE_IF_NOT_EXISTS":
                return None
            if key in self.tables and mode == "CREATE_DEFAULT":
                return f"Already Exists: Table {'.'.join(base.parent.name_path)}"
            fields = [types.schema_field(c.name, c.type) for c in base.column_definition_list]
            if key is not None:
                self.tables[key] = TableDef(fields)
        elif kind == "CreateViewStmt":
            key = self.key(statement.parent.parent.name_path)
            if key is not None:
                self.tables[key] = TableDef(
                    [types.schema_field(c.name, c.column.type) for c in statement.parent.output_column_list]
                )
        elif kind == "DropStmt":
            key = self.key(statement.name_path)
            if key not in self.tables and not statement.is_if_exists:
                return f"Not found: Table {'.'.join(statement.name_path)}"
            self.tables.pop(key, None)
        elif kind == "AlterTableStmt":
            key = self.key(statement.parent.name_path)
            if key not in self.tables:
                if statement.parent.is_if_exists:
                    return None
                return f"Not found: Table {'.'.join(statement.parent.name_path)}"
            fields = [
                dict(f) if isinstance(f, dict) else {k: types.get(f, k) for k in ("name", "type", "mode", "fields")}
                for f in self.tables[key].fields
            ]
            names = {types.get(f, "name").casefold(): i for i, f in enumerate(fields)}
            for action in statement.parent.alter_action_list:
                node = _leaf(action)
                name = node.DESCRIPTOR.name
                if name == "ResolvedAddColumnActionProto":
                    column = node.column_definition.name
                    if column.casefold() in names:
                        if node.is_if_not_exists:
                            continue
                        return f"Column already exists: {column}"
                    fields.append(types.schema_field(column, node.column_definition.type))
                elif name == "ResolvedDropColumnActionProto":
                    if node.name.casefold() not in names:
                        if node.is_if_exists:
                            continue
                        return f"Column not found: {node.name}"
                    fields = [f for f in fields if types.get(f, "name").casefold() != node.name.casefold()]
                elif name == "ResolvedRenameColumnActionProto":
                    if node.name.casefold() not in names:
                        if node.is_if_exists:
                            continue
                        return f"Column not found: {node.name}"
                    fields = [
                        {**f, "name": node.new_name} if types.get(f, "name").casefold() == node.name.casefold() else f
                        for f in fields
                    ]
                elif name == "ResolvedAlterColumnSetDataTypeActionProto":
                    column = node.parent.column
                    fields = [
                        {**types.schema_field(column, node.updated_type), "mode": types.get(f, "mode")}
                        if types.get(f, "name").casefold() == column.casefold()
                        else f
                        for f in fields
                    ]
                elif name == "ResolvedRenameToActionProto":
                    dataset = key.split(".")[0]
                    new = _path_key(list(node.new_path))
                    table = self.tables.pop(key)
                    key = ".".join(new if len(new) == 2 else [dataset, new[-1]]).casefold()
                    self.tables[key] = table
                names = {types.get(f, "name").casefold(): i for i, f in enumerate(fields)}
            self.tables[key] = TableDef(fields, self.tables[key].ingestion_time)
        return None


def migration_version(path: Path) -> int:
    match = _MIGRATION.match(path.name)
    return int(match.group(1)) if match else -1


def check_migrations(analyzer: GoogleSQL, schemas: Schemas, files: list[Path]) -> tuple[int, list[Problem]]:
    """Analyze migrations in version order, each statement against the catalog the earlier ones left."""
    catalog = Catalog(schemas)
    count = 0
    for path in sorted(files, key=lambda p: (migration_version(p), p.name)):
        if migration_version(path) < 0:
            return count, [Problem(path, 1, "a migration file is named <version>_<name>.sql (e.g. 0001_add_email.sql)")]
        text = path.read_text(encoding="utf-8")
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if not _PHASE.match(first):
            return count, [
                Problem(
                    path, 1, "a migration must start with '-- envsync: phase=expand' or '-- envsync: phase=contract'"
                )
            ]
        data = text.encode()
        position = 0
        while position < len(data) and data[position:].strip(b" \t\r\n;"):
            if not _has_code(data[position:].decode(errors="replace")):
                break
            count += 1
            try:
                analysis = analyzer.analyze(text, catalog.lookup, start=position)
            except AnalysisError as error:
                return count, [Problem(path, error.line or _line(text, position), error.message)]
            line = _line(text, position + _leading(data[position:]))
            refused = catalog.apply(analysis)
            if refused:
                return count, [Problem(path, line, refused)]
            if analysis.next_position is None or analysis.next_position <= position:
                break
            position = analysis.next_position
    return count, []


def _leading(data: bytes) -> int:
    """Bytes of whitespace, `;` and comments before a statement's first token."""
    text = data.decode(errors="replace")
    index = 0
    while index < len(text):
        if text[index] in " \t\r\n;":
            index += 1
        elif text.startswith("--", index) or text.startswith("#", index):
            end = text.find("\n", index)
            index = len(text) if end < 0 else end + 1
        elif text.startswith("/*", index):
            end = text.find("*/", index)
            index = len(text) if end < 0 else end + 2
        else:
            break
    return len(text[:index].encode())


def _has_code(text: str) -> bool:
    return len(text.encode()) > _leading(text.encode())


def sql_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files += sorted(path.rglob("*.sql")) if path.is_dir() else [path]
    return files


def run(paths: list[Path], schemas: Schemas, analyzer: GoogleSQL) -> tuple[int, int, list[Problem]]:
    """(files checked, statements analyzed, problems) for the SQL files under paths."""
    files = sql_files(paths)
    statements, problems = 0, []
    migrations = [path for path in files if is_migration(path)]
    if migrations:
        count, found = check_migrations(analyzer, schemas, migrations)
        statements += count
        problems += found
    for path in files:
        if is_migration(path):
            continue
        key = seed_key(path)
        count, found = check_seed(analyzer, schemas, path, key) if key else check_file(analyzer, schemas, path)
        statements += count
        problems += found
    return len(files), statements, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bqfidelity.checksql", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="SQL files or directories (seeds: .../seeds/<ds>/<t>.sql)")
    parser.add_argument("--schemas", type=Path, required=True, help="prod's schemas (JSON, see the module doc)")
    parser.add_argument("--cache", type=Path, default=None, help="compiled-module cache (default BQFIDELITY_CACHE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    missing = [str(p) for p in [args.schemas, *args.paths] if not p.exists()]
    if missing:
        print(f"check-sql: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    from bqfidelity.analyzer import cache_dir

    schemas = Schemas.load(args.schemas)
    analyzer = GoogleSQL(args.cache or cache_dir())
    files, statements, problems = run(args.paths, schemas, analyzer)
    for problem in problems:
        print(problem)
    verdict = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}" if problems else "all accepted"
    print(
        f"check-sql: {files} files, {statements} statements analyzed by GoogleSQL against "
        f"{len(schemas.tables)} prod tables ({args.schemas}): {verdict}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
