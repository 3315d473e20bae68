-- One row per QA -> staging cut: its T, what it carried over (seed and migration versions), the pinned
-- backups of staging taken before it, and how it ended.
create table if not exists {table} (
    recorded_at timestamp not null,
    run_id string not null,
    cut timestamp not null,
    source string,
    seed_version string,
    migration_version string,
    datasets string,
    pinned_backups string,
    status string not null,
    error string
)
partition by date(recorded_at)
