-- One row per DAG run: what ran, on which environment, as of which T and window, how it ended.
create table if not exists {table} (
    recorded_at timestamp not null,
    dag_id string not null,
    run_id string not null,
    run_type string,
    environment string,
    datasets string,
    logical_date timestamp,
    cut timestamp,
    window_start timestamp,
    window_end timestamp,
    status string not null,
    started_at timestamp,
    duration_seconds float64,
    objects int64,
    failed int64,
    row_count int64,
    est_bytes_billed int64,
    bytes_billed int64,
    jobs int64,
    error string,
    manifest string
)
partition by date(recorded_at)
