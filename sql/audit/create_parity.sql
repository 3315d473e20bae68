-- One row per environment x object x finding of a parity check: how far the environment is from prod.
-- status: drift (unexpected), expected (explained: a migration promoted to the environment, or by
-- design), ok (checked and equal: freshness, row counts), unknown (could not be checked, with why).
create table if not exists {table} (
    checked_at timestamp not null,
    dag_id string not null,
    run_id string not null,
    environment string not null,
    dataset string,
    env_dataset string,
    object_name string,
    finding string not null,
    status string not null,
    detail string,
    prod_value string,
    env_value string,
    refreshed_cut timestamp,
    age_hours float64,
    prod_rows int64,
    env_rows int64
)
partition by date(checked_at)
