"""BigQuery's INFORMATION_SCHEMA views as the analyzer sees them: columns and types from BigQuery's
documentation (https://cloud.google.com/bigquery/docs/information-schema-intro), not from what the
local emulator can fill in. A query reading a documented column is valid GoogleSQL even where the
emulator has no value for it.

Views are reached as ``[project.]dataset.INFORMATION_SCHEMA.<VIEW>`` or
``[project.]region-<r>.INFORMATION_SCHEMA.<VIEW>``; the columns are the same either way.
"""

from __future__ import annotations

_IDENTITY = "table_catalog, table_schema, table_name"
_ERROR = "STRUCT<reason STRING, location STRING, debug_info STRING, message STRING>"
_TABLE_REF = "STRUCT<project_id STRING, dataset_id STRING, table_id STRING>"

# view -> "column [TYPE], ..." (STRING when no type is given); top-level commas only.
_VIEWS = {
    "TABLES": f"""{_IDENTITY}, table_type, is_insertable_into, is_typed, is_change_history_enabled,
        creation_time TIMESTAMP, base_table_catalog, base_table_schema, base_table_name,
        snapshot_time_ms TIMESTAMP, ddl, default_collation_name, upsert_stream_apply_watermark TIMESTAMP,
        replica_source_catalog, replica_source_schema, replica_source_name, replication_status,
        replication_error, managed_table_type""",
    "PARTITIONS": f"""{_IDENTITY}, partition_id, total_rows INT64, total_logical_bytes INT64,
        total_billable_bytes INT64, last_modified_time TIMESTAMP, storage_tier""",
    "COLUMNS": f"""{_IDENTITY}, column_name, ordinal_position INT64, is_nullable, data_type, is_generated,
        generation_expression, is_stored, is_hidden, is_updatable, is_system_defined,
        is_partitioning_column, clustering_ordinal_position INT64, collation_name, column_default,
        rounding_mode, policy_tags ARRAY<STRING>""",
    "COLUMN_FIELD_PATHS": f"""{_IDENTITY}, column_name, field_path, data_type, description,
        collation_name, rounding_mode, policy_tags ARRAY<STRING>""",
    "SCHEMATA": """catalog_name, schema_name, schema_owner, creation_time TIMESTAMP,
        last_modified_time TIMESTAMP, location, ddl, default_collation_name""",
    "SCHEMATA_OPTIONS": "catalog_name, schema_name, option_name, option_type, option_value",
    "VIEWS": f"{_IDENTITY}, view_definition, check_option, use_standard_sql",
    "TABLE_OPTIONS": f"{_IDENTITY}, option_name, option_type, option_value",
    "TABLE_SNAPSHOTS": f"""{_IDENTITY}, base_table_catalog, base_table_schema, base_table_name,
        snapshot_time TIMESTAMP""",
    "TABLE_STORAGE": f"""project_id, project_number INT64, {_IDENTITY}, creation_time TIMESTAMP,
        total_rows INT64, total_partitions INT64, total_logical_bytes INT64, active_logical_bytes INT64,
        long_term_logical_bytes INT64, current_physical_bytes INT64, total_physical_bytes INT64,
        active_physical_bytes INT64, long_term_physical_bytes INT64, time_travel_physical_bytes INT64,
        storage_last_modified_time TIMESTAMP, deleted BOOL, table_type, fail_safe_physical_bytes INT64,
        last_metadata_index_refresh_time TIMESTAMP, table_deletion_reason, table_deletion_time TIMESTAMP""",
    "MATERIALIZED_VIEWS": f"""{_IDENTITY}, last_refresh_time TIMESTAMP, refresh_watermark TIMESTAMP,
        last_refresh_status {_ERROR}""",
    "ROUTINES": """specific_catalog, specific_schema, specific_name, routine_catalog, routine_schema,
        routine_name, routine_type, data_type, routine_body, routine_definition, external_language,
        is_deterministic, security_type, created TIMESTAMP, last_altered TIMESTAMP, ddl, connection""",
    "ROUTINE_OPTIONS": """specific_catalog, specific_schema, specific_name, option_name, option_type,
        option_value""",
    "PARAMETERS": """specific_catalog, specific_schema, specific_name, ordinal_position INT64,
        parameter_mode, is_result, parameter_name, data_type, parameter_default, is_aggregate""",
    "JOBS": f"""bi_engine_statistics STRUCT<bi_engine_mode STRING>, cache_hit BOOL,
        creation_time TIMESTAMP, destination_table {_TABLE_REF},
        dml_statistics STRUCT<inserted_row_count INT64, deleted_row_count INT64, updated_row_count INT64>,
        end_time TIMESTAMP, error_result {_ERROR}, job_id, job_type, labels ARRAY<STRUCT<key STRING, value STRING>>,
        parent_job_id, priority, project_id, project_number INT64, query,
        referenced_tables ARRAY<{_TABLE_REF}>, reservation_id, session_info STRUCT<session_id STRING>,
        start_time TIMESTAMP, state, statement_type, total_bytes_billed INT64, total_bytes_processed INT64,
        total_slot_ms INT64, transaction_id, user_email""",
}
_VIEWS["JOBS_BY_PROJECT"] = _VIEWS["JOBS"]
_VIEWS["JOBS_BY_USER"] = _VIEWS["JOBS"]


def _split(text: str, separator: str = ",") -> list[str]:
    """Split on separators outside <...>."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _field(name: str, kind: str) -> dict:
    kind = kind.strip()
    if kind.startswith("ARRAY<"):
        return _field(name, kind[len("ARRAY<") : -1]) | {"mode": "REPEATED"}
    if kind.startswith("STRUCT<"):
        members = [_field(*member.split(None, 1)) for member in _split(kind[len("STRUCT<") : -1])]
        return {"name": name, "type": "RECORD", "mode": "NULLABLE", "fields": members}
    return {"name": name, "type": kind, "mode": "NULLABLE"}


def _columns(spec: str) -> list[dict]:
    columns = []
    for item in _split(" ".join(spec.split())):
        name, _, kind = item.partition(" ")
        columns.append(_field(name, kind or "STRING"))
    return columns


VIEWS: dict[str, list[dict]] = {name: _columns(spec) for name, spec in _VIEWS.items()}


def view(parts: list[str]) -> list[dict] | None:
    """The columns of the INFORMATION_SCHEMA view a flattened table path names, else None."""
    upper = [part.upper() for part in parts]
    if len(upper) < 2 or upper[-2] != "INFORMATION_SCHEMA" or len(upper) > 4:
        return None
    return VIEWS.get(upper[-1])
