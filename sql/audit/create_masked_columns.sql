-- One row per masked column of a DAG run: where it was copied, its mask and why, and the verification's
-- count of rows that still held prod's value (must be 0).
create table if not exists {table} (
    recorded_at timestamp not null,
    dag_id string not null,
    run_id string not null,
    environment string,
    table_name string not null,
    target string,
    column_name string not null,
    mask string not null,
    origin string not null,
    policy_tags string,
    unmasked_rows int64,
    status string
)
partition by date(recorded_at)
