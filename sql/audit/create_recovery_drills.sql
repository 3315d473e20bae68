-- One row per table per recovery drill run: what was restored from where, RTO and RPO, the verdict.
create table if not exists {table} (
    recorded_at timestamp not null,
    dag_id string not null,
    run_id string not null,
    logical_date timestamp,
    point_in_time timestamp not null,
    dataset string not null,
    table_name string not null,
    target string,
    source_kind string,
    source string,
    backup_taken_at timestamp,
    rpo_seconds float64,
    rto_seconds float64,
    row_count int64,
    expected_checksum string,
    checksum string,
    status string not null,
    error string,
    environment string
)
partition by date(recorded_at)
