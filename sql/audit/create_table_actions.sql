-- One row per table (or view, snapshot) action of a DAG run.
create table if not exists {table} (
    recorded_at timestamp not null,
    dag_id string not null,
    run_id string not null,
    environment string,
    table_name string not null,
    target string,
    action string,
    reason string,
    status string not null,
    row_count int64,
    seconds float64,
    est_bytes_billed int64,
    bytes_billed int64,
    jobs int64,
    error string
)
partition by date(recorded_at)
