"""Clones, snapshots and copies keep the source table's metadata; clone/snapshot chains are bounded.

What BigQuery does (and local-bigquery 0.4.0 does not):

- A table clone "has the same metadata as a standard table" copied from its base table: schema
  (with modes and descriptions), partitioning, clustering and ``require_partition_filter``
  (https://cloud.google.com/bigquery/docs/table-clones-intro, "Table clone metadata";
  https://cloud.google.com/bigquery/docs/table-clones-create). Cloning a table that requires a
  partition filter works: a clone is not a query.
- A table snapshot preserves the base table's schema, partitioning and clustering, and restoring it
  gives a standard table with them (https://cloud.google.com/bigquery/docs/table-snapshots-intro,
  https://cloud.google.com/bigquery/docs/table-snapshots-restore).
- A copy job into a new table creates it with the source's schema, partitioning and clustering
  (https://cloud.google.com/bigquery/docs/managing-tables#copy-table); with WRITE_TRUNCATE into an
  existing table it replaces the data and schema and keeps the destination table's own settings
  (description, labels, expiration, partition expiration, access).
- The emulator implements CLONE as ``CREATE TABLE AS SELECT * FROM source``: the new DuckDB table
  loses NOT NULL (REQUIRED modes) and the stored resource loses the layout. This module copies the
  source's resource onto the new table and re-applies NOT NULL to top-level REQUIRED columns.
- Clone/snapshot chains: BigQuery refuses a clone or snapshot whose base is already the second
  link of a clone/snapshot chain, i.e. cloning or snapshotting the result of a clone or snapshot a
  third time ("Quotas and limits: table clones and table snapshots",
  https://cloud.google.com/bigquery/quotas#table_snapshots). A copy job (COPY, RESTORE) writes a
  standard table: the chain starts again.
- Clones and snapshots stay in their base table's region: "the clone must be in the same region
  as the base table" and a snapshot's dataset must be "in the same region ... as the base table"
  (https://cloud.google.com/bigquery/docs/table-clones-intro, "Limitations";
  https://cloud.google.com/bigquery/docs/table-snapshots-intro, "Limitations"); across projects of
  one region they work. The emulator cloned into a dataset of any location. ``CREATE [SNAPSHOT]
  TABLE ... CLONE`` (and CLONE/SNAPSHOT copy jobs, which run through it) into a dataset of another
  location now fail as BigQuery answers a job that reads and writes two locations: ``Cannot read and
  write in different locations: source: US, destination: EU`` (invalid). A CLONE copy job across
  regions, which BigQuery turns into a full copy, is refused too (stricter than BigQuery).
- A view whose query no longer resolves (a column or table it reads was dropped) is still a view:
  tables.get returns its resource (https://cloud.google.com/bigquery/docs/reference/rest/v2/tables/get;
  a view's schema is recorded when it is created, https://cloud.google.com/bigquery/docs/views), and
  only a query of it fails. The emulator derived a view's columns by running ``SELECT * FROM view
  LIMIT 0`` on every tables.get, so the lookup itself failed with HTTP 400; now such a view answers
  with the schema stored for it (none when the emulator stored none).
- A table's ``numRows`` is "the number of rows of data in this table, excluding any data in the
  streaming buffer" (https://cloud.google.com/bigquery/docs/reference/rest/v2/tables#Table.FIELDS.num_rows):
  the rows it holds now. The emulator answered DuckDB's ``estimated_size``, which on its DuckLake
  storage counts every row ever inserted: after an UPDATE of 20 rows a table of 20 rows said 40, after
  a DELETE the deleted rows stayed counted. Now tables.get (and everything that loads a table's
  resource: INFORMATION_SCHEMA, the analyzer's lookups) counts the table's rows.
"""

from __future__ import annotations

import functools
import threading

# Depth of the clone/snapshot chain a table ends: 0 for a standard table, 1 for a clone or snapshot
# of one, 2 for a clone or snapshot of that. A clone or snapshot of a depth-2 table is refused.
MAX_CHAIN_DEPTH = 2
# Resource fields a clone, snapshot or copy into a new table takes from its source.
LAYOUT_FIELDS = ("timePartitioning", "rangePartitioning", "clustering", "requirePartitionFilter")
CLONE_FIELDS = (*LAYOUT_FIELDS, "description")

# The chain depth of a table is kept beside the emulator's catalog, keyed by the table's creation
# time as well as its name: a table dropped and made again under the same name is a new table
# (depth 0), while a rename keeps the table, its creation time and so its depth.
_chain_lock = threading.Lock()
_CHAIN_DDL = (
    "CREATE TABLE IF NOT EXISTS emulator.bqfidelity_chain ("
    "project_id VARCHAR, dataset_id VARCHAR, table_id VARCHAR, creation_time VARCHAR, depth INTEGER NOT NULL, "
    "PRIMARY KEY (project_id, dataset_id, table_id))"
)
_KEY = "project_id = ? AND dataset_id = ? AND table_id = ?"


def _database():
    from local_bigquery.engine import database

    return database


@functools.cache
def _chain_table() -> None:
    _database().execute(_CHAIN_DDL)


def _creation_time(reference: tuple[str, str, str]) -> str | None:
    from local_bigquery.catalog import metadata
    from local_bigquery.models import Table

    stored = metadata.load(Table, *reference)
    return stored.creationTime if stored else None


def chain_depth(project_id: str, dataset_id: str, table_id: str) -> int:
    """The clone/snapshot chain depth of a table (0 when it is a standard table)."""
    _chain_table()
    reference = (project_id, dataset_id, table_id)
    rows = _database().fetch(
        f"SELECT depth, creation_time FROM emulator.bqfidelity_chain WHERE {_KEY}", list(reference)
    )
    if not rows or rows[0][1] != _creation_time(reference):
        return 0
    return int(rows[0][0])


def set_chain_depth(project_id: str, dataset_id: str, table_id: str, depth: int) -> None:
    _chain_table()
    reference = [project_id, dataset_id, table_id]
    database = _database()
    with _chain_lock:
        database.execute(f"DELETE FROM emulator.bqfidelity_chain WHERE {_KEY}", reference)
        if depth:
            database.execute(
                "INSERT INTO emulator.bqfidelity_chain VALUES (?, ?, ?, ?, ?)",
                [*reference, _creation_time((project_id, dataset_id, table_id)), depth],
            )


def check_chain(source: tuple[str, str, str], kind: str) -> int:
    """The depth the new clone/snapshot of `source` would have; raises BigQuery's error past the limit."""
    from local_bigquery.catalog import names
    from local_bigquery.errors import BigQueryError

    depth = chain_depth(*source) + 1
    if depth > MAX_CHAIN_DEPTH:
        raise BigQueryError(
            "invalid",
            f"Cannot create a {kind} of table {names.label(*source)}: it is already a {kind_of(source)} at "
            f"depth {depth - 1} of a clone/snapshot chain, and BigQuery allows at most {MAX_CHAIN_DEPTH} "
            "(quotas: table clones/snapshots). Copy the table (a copy job) to start a new chain.",
        )
    return depth


def kind_of(reference: tuple[str, str, str]) -> str:
    from local_bigquery.catalog import metadata
    from local_bigquery.models import Table

    stored = metadata.load(Table, *reference)
    if stored and (stored.type == "SNAPSHOT" or stored.snapshotDefinition):
        return "snapshot"
    return "clone"


# --------------------------------------------------------------------------------------------
# Source metadata onto the new table


def _source_resource(reference: tuple[str, str, str]):
    """The source table's resource with its full schema (modes and descriptions), as tables.get gives it."""
    from local_bigquery.catalog import tables

    return tables.load(*reference)


def _required_columns(resource) -> list[str]:
    return [f.name for f in (resource.schema_ and resource.schema_.fields) or [] if f.mode == "REQUIRED"]


def _enforce_required(reference: tuple[str, str, str], columns: list[str]) -> None:
    """NOT NULL on the DuckDB table for the top-level REQUIRED columns (nested ones live in the resource).

    DuckLake refuses SET NOT NULL on a table without statistics (one that never held a row); such a
    table is empty, so it is created again with its columns declared NOT NULL.
    """
    import duckdb
    from local_bigquery.catalog import tables
    from local_bigquery.engine.database import quote

    if not columns:
        return
    database, table = _database(), tables.name(*reference)
    with database.writing(*reference):
        try:
            for column in columns:
                database.execute(f"ALTER TABLE {table} ALTER COLUMN {quote(column)} SET NOT NULL")
        except duckdb.CatalogException as error:
            if "no stats are available" not in str(error) or database.fetch(f"SELECT 1 FROM {table} LIMIT 1"):
                raise
            required = {c.casefold() for c in columns}
            declared = database.fetch(
                "SELECT column_name, data_type, NOT is_nullable FROM duckdb_columns() "
                "WHERE database_name = ? AND schema_name = ? AND table_name = ? ORDER BY column_index",
                list(tables.physical(*reference)),
            )
            body = ", ".join(
                f"{quote(name)} {kind}" + (" NOT NULL" if not_null or name.casefold() in required else "")
                for name, kind, not_null in declared
            )
            database.execute(f"CREATE OR REPLACE TABLE {table} ({body})")


def carry_over(source, target: tuple[str, str, str], fields: tuple[str, ...], keep_target: bool) -> None:
    """Give `target` the source's schema and `fields`; keep target's own settings when `keep_target`."""
    from local_bigquery.catalog import metadata, tables
    from local_bigquery.models import Table

    stored = metadata.load(Table, *target) or tables.defaults(*target)
    taken = {key: value for key, value in source.dump().items() if key in fields}
    dropped = [key for key in fields if key not in taken and not keep_target]
    resource = stored.without(*dropped).replace(schema=source.dump().get("schema"), **taken)
    tables.record(*target, resource)
    _enforce_required(target, _required_columns(source))


# --------------------------------------------------------------------------------------------
# Patches


def _is_clone(tree) -> bool:
    from sqlglot import exp

    return isinstance(tree, exp.Create) and tree.args.get("clone") is not None and not tree.args.get("expression")


def _clone_refs(tree, context):
    from local_bigquery.catalog import names
    from sqlglot import exp

    clone = tree.args["clone"]
    source = names.reference(clone.this, context.project_id, context.dataset_id)
    target = names.reference(tree.find(exp.Table), context.project_id, context.dataset_id)
    return source, target


def _check_same_location(source: tuple[str, str, str], target: tuple[str, str, str]) -> None:
    """A clone or snapshot is written in its base table's location (see the module's docstring)."""
    from local_bigquery.catalog import datasets
    from local_bigquery.errors import BigQueryError

    if not (datasets.exists(*source[:2]) and datasets.exists(*target[:2])):
        return  # the emulator answers notFound itself
    here = (datasets.get(*source[:2]).location or "US").upper()
    there = (datasets.get(*target[:2]).location or "US").upper()
    if here != there:
        raise BigQueryError(
            "invalid", f"Cannot read and write in different locations: source: {here}, destination: {there}"
        )


def _patch_statement(query_module) -> None:
    """CREATE [SNAPSHOT] TABLE ... CLONE: chain check first, the source's metadata onto the new table after."""
    original = query_module._statement

    @functools.wraps(original)
    def _statement(cur, tree, context, destination, config, dry_run, isolated):
        from local_bigquery.sql.rules import ddl

        tree = ddl.normalise(tree)
        if not _is_clone(tree):
            return original(cur, tree, context, destination, config, dry_run, isolated)
        source, target = _clone_refs(tree, context)
        _check_same_location(source, target)
        snapshot = bool(tree.meta.get("snapshot"))
        depth = check_chain(source, "snapshot" if snapshot else "clone")
        resource = _source_resource(source)
        statistics = original(cur, tree, context, destination, config, dry_run, isolated)
        if not dry_run and statistics.ddlOperationPerformed != "SKIP":
            carry_over(resource, target, CLONE_FIELDS, keep_target=False)
            set_chain_depth(*target, depth)
        return statistics

    query_module._statement = _statement


def _patch_copy(copy_module) -> None:
    """Copy jobs: CLONE/SNAPSHOT go through the DDL above; COPY/RESTORE keep the source's layout."""
    original = copy_module.run

    @functools.wraps(original)
    def run(cur, config, upload):
        from local_bigquery.catalog import tables
        from local_bigquery.sql.rules.tables import decorated

        operation = config.operationType or "COPY"
        sources = config.sourceTables or [config.sourceTable]
        references = [tables.reference(source) for source in sources]
        destination = tables.reference(config.destinationTable)
        if operation in ("CLONE", "SNAPSHOT"):
            return original(cur, config, upload)
        existed = tables.exists(*destination)
        source = references[0]
        resource = None if decorated(*source) else _source_resource(source)
        statistics = original(cur, config, upload)
        if resource is not None:
            truncate = (config.writeDisposition or "WRITE_EMPTY") == "WRITE_TRUNCATE"
            if not existed or truncate:
                fields = LAYOUT_FIELDS if not existed else ()
                carry_over(resource, destination, fields, keep_target=existed)
        set_chain_depth(*destination, 0)
        return statistics

    copy_module.run = run


def _patch_rename(tables_module) -> None:
    """ALTER TABLE ... RENAME TO keeps the table, so it keeps its chain depth."""
    rename = tables_module.rename

    @functools.wraps(rename)
    def _rename(project_id: str, dataset_id: str, table_id: str, new_id: str):
        depth = chain_depth(project_id, dataset_id, table_id)
        rename(project_id, dataset_id, table_id, new_id)
        set_chain_depth(project_id, dataset_id, new_id, depth)

    tables_module.rename = _rename


def _patch_view_columns(tables_module) -> None:
    """tables.get of a view that no longer resolves: its stored schema, not an error (see above)."""
    import duckdb

    columns = tables_module.columns

    @functools.wraps(columns)
    def _columns(project_id: str, dataset_id: str, table_id: str):
        try:
            return columns(project_id, dataset_id, table_id)
        except duckdb.CatalogException:
            raise  # the emulator answers NotFound for it
        except duckdb.Error:
            found = tables_module._lookup(project_id, dataset_id, table_id)
            if not found or found[0] != "VIEW":
                raise
            return tables_module.fields(_stored((project_id, dataset_id, table_id)))

    tables_module.columns = _columns


def _patch_row_count(tables_module) -> None:
    """A table's row count is the rows it holds now, not DuckDB's estimate (see above)."""
    lookup = tables_module._lookup

    @functools.wraps(lookup)
    def _lookup(project_id: str, dataset_id: str, table_id: str):
        found = lookup(project_id, dataset_id, table_id)
        if not found or found[0] != "TABLE":
            return found
        rows = _database().fetch(f"SELECT count(*) FROM {tables_module.name(project_id, dataset_id, table_id)}")
        return (found[0], int(rows[0][0]))

    tables_module._lookup = _lookup


def _stored(reference: tuple[str, str, str]):
    from local_bigquery.catalog import metadata
    from local_bigquery.models import Table

    return metadata.load(Table, *reference) or Table.model_validate({})


def install() -> None:
    from local_bigquery.catalog import tables
    from local_bigquery.jobs import copy, query, runner

    _patch_statement(query)
    _patch_copy(copy)
    runner.HANDLERS["copy"] = copy.run  # the job runner captured the unpatched function
    _patch_rename(tables)
    _patch_view_columns(tables)
    _patch_row_count(tables)
