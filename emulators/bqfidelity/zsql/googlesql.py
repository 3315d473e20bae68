"""GoogleSQL analysis of one BigQuery statement against a catalog of table schemas.

BigQuery's front end parses and resolves every statement with GoogleSQL (ZetaSQL): names, types,
function signatures, parameters. ``GoogleSQL.analyze`` does the same offline, in-process, with the
settings closest to BigQuery's (see ``language_options``): the statement is refused exactly when
GoogleSQL refuses it, with GoogleSQL's message in BigQuery's form (``... at [line:column]``).

The catalog is built per statement from the tables it names, in the form the SQL spells them: a
backquoted ```p.ds.t``` is one identifier (a table named "p.ds.t" at the root), ``p.ds.t`` is a
path (catalog p, catalog ds, table t). ``lookup`` maps a name to its schema; INFORMATION_SCHEMA
views are known here (``information_schema``). Building GoogleSQL's built-in function catalog costs
about 20 ms, so catalogs are registered once and kept while they serve: the registered catalog
holds every table seen lately, and is only rebuilt when a statement names a table it lacks, or one
whose schema changed (or that no longer exists).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import empty_pb2
from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2 as ls
from zetasql.wasi._pb2.zetasql.proto import options_pb2 as opts
from zetasql.wasi._pb2.zetasql.proto import simple_catalog_pb2 as sc
from zetasql.wasi._pb2.zetasql.public import options_pb2 as popts
from zetasql.wasi._pb2.zetasql.public import simple_constant_pb2 as const_pb2
from zetasql.wasi._pb2.zetasql.public import simple_table_pb2 as st
from zetasql.wasi._pb2.zetasql.public import type_pb2 as tp

from bqfidelity.zsql import information_schema, types
from bqfidelity.zsql.engine import Engine, ZetaSQLError

# Tables in the registered catalog before it is rebuilt from scratch (keeps registration cheap).
MAX_CATALOG_TABLES = 400
_LOCATION = re.compile(r"\s*\[at (\d+):(\d+)\]$")
# ALTER TABLE/VIEW targets: ZetaSQL's table-name extraction leaves them out, but ALTER TABLE ...
# RENAME/ADD/DROP COLUMN looks the table up.
_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|#[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_SEGMENT = r"(?:`(?:[^`\\]|\\.)+`|[A-Za-z_][\w-]*)"
_ALTER = re.compile(
    rf"ALTER\s+(?:TABLE|VIEW|MATERIALIZED\s+VIEW)\s+(?:IF\s+EXISTS\s+)?({_SEGMENT}(?:\s*\.\s*{_SEGMENT})*)",
    re.IGNORECASE,
)

# BigQuery's system variables (https://cloud.google.com/bigquery/docs/reference/system-variables).
_ERROR_FRAME = "STRUCT<line INT64, column INT64, filename STRING, location STRING>"
SYSTEM_VARIABLES = {
    "current_job_id": "STRING",
    "dataset_id": "STRING",
    "dataset_project_id": "STRING",
    "error.formatted_stack_trace": "STRING",
    "error.message": "STRING",
    "error.stack_trace": f"ARRAY<{_ERROR_FRAME}>",
    "error.statement_text": "STRING",
    "last_job_id": "STRING",
    "location": "STRING",
    "project_id": "STRING",
    "query_label": "STRING",
    "reservation": "STRING",
    "row_count": "INT64",
    "script.bytes_billed": "INT64",
    "script.bytes_processed": "INT64",
    "script.creation_time": "TIMESTAMP",
    "script.job_id": "STRING",
    "script.num_child_jobs": "INT64",
    "script.slot_ms": "INT64",
    "session_id": "STRING",
    "time_zone": "STRING",
}


# Language features BigQuery has that GetLanguageOptions(maximum_features) leaves out; each one is
# a documented BigQuery statement or type rule.
EXTRA_FEATURES = (
    popts.FEATURE_CREATE_TABLE_CLONE,  # CREATE TABLE ... CLONE
    popts.FEATURE_CREATE_SNAPSHOT_TABLE,  # CREATE SNAPSHOT TABLE ... CLONE
    popts.FEATURE_ALTER_COLUMN_SET_DATA_TYPE,  # ALTER TABLE ... ALTER COLUMN ... SET DATA TYPE
    popts.FEATURE_DISABLE_FLOAT32,  # BigQuery has no FLOAT32 type
    # column collation, `STRING COLLATE 'und:ci'` in CREATE TABLE and COLLATE()
    # (https://cloud.google.com/bigquery/docs/reference/standard-sql/collation-concepts)
    popts.FEATURE_V_1_3_ANNOTATION_FRAMEWORK,
    popts.FEATURE_V_1_3_COLLATION_SUPPORT,
)


@dataclass(frozen=True)
class TableDef:
    """A table as the analyzer needs it: BigQuery schema fields, and whether it is partitioned by
    ingestion time (then it has the pseudo-columns _PARTITIONTIME and _PARTITIONDATE)."""

    fields: Sequence[Any]  # dicts, or local-bigquery TableFieldSchema models
    ingestion_time: bool = False


# (flattened path as written: 1 to 4 parts) -> the table, or None when it does not exist.
Lookup = Callable[[list[str]], "TableDef | None"]


@dataclass
class Analysis:
    """An accepted statement: its resolved kind (e.g. QueryStmt) and, for a query, its output columns."""

    kind: str
    columns: list[tuple[str, tp.TypeProto]] = field(default_factory=list)
    tables: list[list[str]] = field(default_factory=list)  # the names it reads, as written
    # Where the time went: extracting the table names, looking the tables up, registering a new
    # catalog (when needed), analyzing.
    seconds: dict[str, float] = field(default_factory=dict)
    # With locations=True: byte offset in the input of each output column's SELECT list item (None: unknown).
    offsets: list[int | None] = field(default_factory=list)
    # With start=: byte offset where the next statement of the input starts (len(input) at the end).
    next_position: int | None = None
    # The resolved statement (the concrete Resolved*Proto), e.g. to follow what DDL changes.
    resolved: Any = None


class AnalysisError(Exception):
    """GoogleSQL refused the statement. ``message`` is BigQuery-shaped (``... at [line:column]``)."""

    def __init__(
        self,
        message: str,
        line: int | None = None,
        column: int | None = None,
        *,
        missing_tables: Sequence[str] = (),
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # ZetaSQL's further lines (e.g. the signatures that did not match)
        self.line = line
        self.column = column
        # Names the statement reads that lookup did not find (GoogleSQL then says "Table not found").
        self.missing_tables = list(missing_tables)

    @property
    def table_not_found(self) -> bool:
        return bool(self.missing_tables) and self.message.startswith("Table not found")

    @property
    def syntax(self) -> bool:
        return self.message.startswith("Syntax error")


def _error(error: ZetaSQLError, missing: Sequence[str] = ()) -> AnalysisError:
    """BigQuery's form of a ZetaSQL error: its first line, then `at [line:column]` (ZetaSQL says
    `[at line:column]` after any detail lines, e.g. the signatures a call could have matched)."""
    text = error.text.strip()
    match = _LOCATION.search(text)
    body = text[: match.start()] if match else text
    first, _, detail = body.partition("\n")
    if not match:
        return AnalysisError(first, missing_tables=missing, detail=detail)
    line, column = int(match.group(1)), int(match.group(2))
    return AnalysisError(f"{first} at [{line}:{column}]", line, column, missing_tables=missing, detail=detail)


def _leaf(node: Any) -> Any:
    """The concrete node inside the resolved AST's Any* wrappers (oneofs named "node")."""
    while "node" in node.DESCRIPTOR.oneofs_by_name and (which := node.WhichOneof("node")):
        node = getattr(node, which)
    return node


def _kind(node: Any) -> str:
    """ResolvedQueryStmtProto -> QueryStmt."""
    return _leaf(node).DESCRIPTOR.name.removeprefix("Resolved").removesuffix("Proto")


def _alter_target(sql: str) -> list[str] | None:
    """The name an ALTER TABLE/VIEW statement alters, as spelled (segments unquoted), else None."""
    match = _ALTER.match(sql, _COMMENTS.match(sql).end())
    if not match:
        return None
    segments = re.findall(_SEGMENT, match.group(1))
    return [segment[1:-1] if segment.startswith("`") else segment for segment in segments]


def _resume(sql: str, start: int) -> Any:
    from zetasql.wasi._pb2.zetasql.public import parse_resume_location_pb2

    return parse_resume_location_pb2.ParseResumeLocationProto(input=sql, byte_position=start, allow_resume=True)


def _select_columns(parsed: Any) -> list[int] | None:
    """Byte offsets of the items of a query statement's outermost SELECT list (the first SELECT of a
    set operation), from ZetaSQL's parse tree; None for anything else."""
    node = _leaf(parsed)
    if node.DESCRIPTOR.name != "ASTQueryStatementProto":
        return None
    query = node.query
    while True:
        expression = _leaf(query.query_expr)
        name = expression.DESCRIPTOR.name
        if name == "ASTQueryProto":
            query = expression
        elif name == "ASTSetOperationProto" and expression.inputs:
            query = None
            first = _leaf(expression.inputs[0])
            if first.DESCRIPTOR.name == "ASTSelectProto":
                expression = first
                break
            if first.DESCRIPTOR.name != "ASTQueryProto":
                return None
            query = first
        else:
            break
    if expression.DESCRIPTOR.name != "ASTSelectProto":
        return None
    return [column.parent.parse_location_range.start for column in expression.select_list.columns]


def _key(path: Sequence[str]) -> tuple[str, ...]:
    # GoogleSQL's catalog lookups ignore case, so one entry per case-folded path.
    return ("table", *(part.casefold() for part in path))


def _table_proto(name: str, table: TableDef) -> st.SimpleTableProto:
    columns = [st.SimpleColumnProto(name=types.get(f, "name"), type=types.field_type(f)) for f in table.fields]
    if table.ingestion_time:
        columns += [
            st.SimpleColumnProto(name="_PARTITIONTIME", type=types.scalar(tp.TYPE_TIMESTAMP), is_pseudo_column=True),
            st.SimpleColumnProto(name="_PARTITIONDATE", type=types.scalar(tp.TYPE_DATE), is_pseudo_column=True),
        ]
    return st.SimpleTableProto(name=name, column=columns)


class GoogleSQL:
    """The analyzer: one WebAssembly instance of ZetaSQL, thread-safe, with registered catalogs."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        started = time.monotonic()
        self.engine = Engine(cache_dir)
        self.language = self._language_options()
        self._builtins = opts.ZetaSQLBuiltinFunctionOptionsProto(language_options=self.language)
        self._system_variables = [
            opts.AnalyzerOptionsProto.SystemVariableProto(
                name_path=name.split("."), type=types.field_type(information_schema._field(name, kind))
            )
            for name, kind in SYSTEM_VARIABLES.items()
        ]
        # PARTITION BY _PARTITIONDATE / _PARTITIONTIME (ingestion-time partitioning) in DDL.
        self._ddl_pseudo_columns = [
            opts.AnalyzerOptionsProto.QueryParameterProto(name="_PARTITIONTIME", type=types.scalar(tp.TYPE_TIMESTAMP)),
            opts.AnalyzerOptionsProto.QueryParameterProto(name="_PARTITIONDATE", type=types.scalar(tp.TYPE_DATE)),
        ]
        self._lock = threading.RLock()
        # The registered catalog: entry key -> serialized proto, and its id.
        self._world: dict[tuple, bytes] = {}
        self._world_id: int | None = None
        self.registrations = 0
        self.start_seconds = time.monotonic() - started

    # ------------------------------------------------------------------ options

    def _language_options(self) -> opts.LanguageOptionsProto:
        """BigQuery's settings: every released feature, external product mode, every statement kind,
        QUALIFY reserved, and the BigQuery features the maximum set leaves out (EXTRA_FEATURES)."""
        language = self.engine.call(
            "GetLanguageOptions", ls.LanguageOptionsRequest(maximum_features=True), opts.LanguageOptionsProto
        )
        language.product_mode = popts.PRODUCT_EXTERNAL
        del language.supported_statement_kinds[:]  # empty = all kinds
        if "QUALIFY" not in language.reserved_keywords:
            language.reserved_keywords.append("QUALIFY")
        for feature in EXTRA_FEATURES:
            if feature not in language.enabled_language_features:
                language.enabled_language_features.append(feature)
        return language

    def _analyzer_options(
        self, parameters: Mapping[str, tp.TypeProto] | None, positional: Sequence[tp.TypeProto] | None
    ) -> opts.AnalyzerOptionsProto:
        options = opts.AnalyzerOptionsProto(
            language_options=self.language,
            error_message_mode=popts.ERROR_MESSAGE_ONE_LINE,
            default_timezone="UTC",
            system_variables=self._system_variables,
            ddl_pseudo_columns=self._ddl_pseudo_columns,
        )
        if positional is not None:
            options.parameter_mode = popts.PARAMETER_POSITIONAL
            options.positional_query_parameters.extend(positional)
        else:
            options.parameter_mode = popts.PARAMETER_NAMED
            for name, kind in (parameters or {}).items():
                options.query_parameters.append(opts.AnalyzerOptionsProto.QueryParameterProto(name=name, type=kind))
        return options

    # ------------------------------------------------------------------ analysis

    def table_names(self, sql: str, start: int | None = None) -> list[list[str]]:
        """The table names a statement reads or writes, as spelled (CTE names excluded); with start,
        those of the statement that starts at that byte offset of sql."""
        try:
            if start is None:
                response = self.engine.call(
                    "ExtractTableNamesFromStatement",
                    ls.ExtractTableNamesFromStatementRequest(sql_statement=sql, options=self.language),
                    ls.ExtractTableNamesFromStatementResponse,
                )
            else:
                response = self.engine.call(
                    "ExtractTableNamesFromNextStatement",
                    ls.ExtractTableNamesFromNextStatementRequest(
                        parse_resume_location=_resume(sql, start), options=self.language
                    ),
                    ls.ExtractTableNamesFromNextStatementResponse,
                )
        except ZetaSQLError as error:
            raise _error(error) from None
        return [list(name.table_name_segment) for name in response.table_name]

    def analyze(
        self,
        sql: str,
        lookup: Lookup,
        parameters: Mapping[str, tp.TypeProto] | None = None,
        positional: Sequence[tp.TypeProto] | None = None,
        constants: Mapping[str, tp.TypeProto] | None = None,
        *,
        start: int | None = None,
        locations: bool = False,
    ) -> Analysis:
        """Analyze one statement; raises AnalysisError when GoogleSQL refuses it.

        parameters: the named query parameters declared with the statement (name -> type);
        positional: the positional ones (then ``?`` is the parameter syntax); constants: names that
        resolve as values (a script's variables), name -> type. start: analyze the statement that
        starts at this byte offset of sql (a file of several statements; errors keep the file's
        line numbers) and return where the next one starts. locations: find where each output
        column is written (its item in the outermost SELECT list).
        """
        with self._lock:
            clock = time.monotonic()
            seconds = {}
            names = self.table_names(sql, start)
            seconds["names"] = time.monotonic() - clock
            clock = time.monotonic()
            target = _alter_target(sql if start is None else sql.encode()[start:].decode(errors="replace"))
            if target and target not in names:
                names.append(target)
            entries: dict[tuple, bytes | None] = {}
            missing = []
            for spelled in names:
                found = self._resolve(spelled, lookup)
                if found is None:
                    missing.append(".".join(spelled))
                    entries[_key(spelled)] = None
                    continue
                path, table = found
                entries[_key(path)] = _table_proto(path[-1], table).SerializeToString()
            for name, kind in (constants or {}).items():
                entries[("constant", name.lower())] = const_pb2.SimpleConstantProto(
                    name_path=[name], type=kind
                ).SerializeToString()
            seconds["lookup"] = time.monotonic() - clock
            clock = time.monotonic()
            catalog_id = self._catalog(entries)
            seconds["catalog"] = time.monotonic() - clock
            clock = time.monotonic()
            options = self._analyzer_options(parameters, positional)
            request = ls.AnalyzeRequest(options=options, registered_catalog_id=catalog_id)
            if start is None:
                request.sql_statement = sql
            else:
                request.parse_resume_location.CopyFrom(_resume(sql, start))
            try:
                response = self.engine.call("Analyze", request, ls.AnalyzeResponse)
            except ZetaSQLError as error:
                raise _error(error, missing) from None
            seconds["analyze"] = time.monotonic() - clock
        statement = _leaf(response.resolved_statement)
        analysis = Analysis(kind=_kind(response.resolved_statement), tables=names, seconds=seconds, resolved=statement)
        if start is not None:
            analysis.next_position = response.resume_byte_position
        if analysis.kind == "QueryStmt":
            analysis.columns = [(c.name, c.column.type) for c in statement.output_column_list]
            if locations:
                analysis.offsets = self._column_offsets(sql, start, len(analysis.columns))
        return analysis

    def _column_offsets(self, sql: str, start: int | None, count: int) -> list[int | None]:
        """Where each output column of a query is written (its SELECT list item), when the list has
        one item per column (no SELECT *)."""
        if start is None:
            request = ls.ParseRequest(sql_statement=sql, options=self.language)
        else:
            request = ls.ParseRequest(parse_resume_location=_resume(sql, start), options=self.language)
        try:
            parsed = self.engine.call("Parse", request, ls.ParseResponse).parsed_statement
        except ZetaSQLError:
            return [None] * count
        offsets = _select_columns(parsed)
        if offsets is None or len(offsets) != count:
            return [None] * count
        return list(offsets)

    def _resolve(self, spelled: list[str], lookup: Lookup) -> tuple[list[str], TableDef] | None:
        """(the spelled path the catalog must hold, its table) for a name, trying shorter prefixes
        too (``ds.t.array_column`` in FROM reads table ds.t)."""
        for length in range(len(spelled), 0, -1):
            path = spelled[:length]
            parts = [part for segment in path for part in segment.split(".")]
            columns = information_schema.view(parts)
            if columns is not None:
                return path, TableDef(columns)
            table = lookup(parts)
            if table is not None:
                return path, table
        return None

    # ------------------------------------------------------------------ catalogs

    def _catalog(self, entries: dict[tuple, bytes | None]) -> int:
        """A registered catalog holding exactly these entries (None: must be absent) and maybe others."""
        world = self._world
        fits = self._world_id is not None and all(world.get(key) == value for key, value in entries.items())
        if fits:
            return self._world_id  # type: ignore[return-value]  # fits: not None
        present = {key: value for key, value in entries.items() if value is not None}
        if len(world) + len(present) > MAX_CATALOG_TABLES:
            world = {}
        world = {key: value for key, value in world.items() if key not in entries} | present
        registered = self.engine.call(
            "RegisterCatalog", ls.RegisterCatalogRequest(simple_catalog=self._build(world)), ls.RegisterResponse
        )
        self.registrations += 1
        if self._world_id is not None:
            self.engine.call("UnregisterCatalog", ls.UnregisterRequest(registered_id=self._world_id), empty_pb2.Empty)
        self._world, self._world_id = world, registered.registered_id
        return registered.registered_id

    def _build(self, world: dict[tuple, bytes]) -> sc.SimpleCatalogProto:
        root = sc.SimpleCatalogProto(builtin_function_options=self._builtins)
        children: dict[tuple[str, ...], sc.SimpleCatalogProto] = {(): root}

        def catalog(path: tuple[str, ...]) -> sc.SimpleCatalogProto:
            if path not in children:
                parent = catalog(path[:-1])
                child = parent.catalog.add(name=path[-1])
                children[path] = child
            return children[path]

        # Parents first: protobuf sub-messages are copied by add(), so build top-down.
        for key in sorted(world, key=len):
            kind, *path = key
            if kind == "table":
                catalog(tuple(path[:-1]))
        for key, value in world.items():
            kind, *path = key
            if kind == "table":
                catalog(tuple(path[:-1])).table.append(st.SimpleTableProto.FromString(value))
            else:
                root.constant.append(const_pb2.SimpleConstantProto.FromString(value))
        return root
