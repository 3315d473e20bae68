-- Per environment: the newest schema migration version applied (envsync_audit.migrations; the newest
-- row of a version says where it stands), and the newest ledger row whatever its status.
with newest_per_version as (
    select
        environment,
        version,
        name,
        status,
        error,
        applied_at,
        dag_id,
        run_id
    from {migrations}
    where true
    qualify row_number() over (partition by environment, version order by applied_at desc) = 1
),

applied as (
    select *
    from newest_per_version
    where status in ('applied', 'synced')
    qualify row_number() over (partition by environment order by version desc) = 1
),

last_row as (
    select *
    from newest_per_version
    where true
    qualify row_number() over (partition by environment order by applied_at desc) = 1
)

select
    last_row.environment,
    applied.version,
    applied.name,
    applied.applied_at,
    applied.dag_id,
    applied.run_id,
    last_row.version as last_version,
    last_row.status as last_status,
    last_row.error as last_error,
    last_row.applied_at as last_applied_at,
    last_row.dag_id as last_dag_id,
    last_row.run_id as last_run_id
from last_row
left join applied on applied.environment = last_row.environment
order by last_row.environment
