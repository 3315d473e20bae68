-- One row per schema migration per environment and run: applied, failed, or synced (the environment
-- was rebuilt from prod, which had the migration). The newest row of a version says where it stands.
create table if not exists {table} (
    applied_at timestamp not null,
    environment string not null,
    version int64 not null,
    name string not null,
    phase string not null,
    checksum string not null,
    dag_id string,
    run_id string,
    status string not null,
    error string
)
partition by date(applied_at)
