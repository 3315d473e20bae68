-- Tables whose copy, seed, backup or restore failed its verification (row counts, checksums, schema,
-- partitioning) in the last 30 days, newest first.
-- (replace envsync_audit if audit.dataset is set to another dataset)
select
    recorded_at,
    dag_id,
    run_id,
    environment,
    table_name,
    target,
    action,
    error
from envsync_audit.table_actions
where
    status = 'failed'
    and recorded_at >= timestamp_sub(current_timestamp(), interval 30 day)
    and regexp_contains(error, r'(?i)verification|checksum|schema differs|rows per|partitioning|manifest says')
order by recorded_at desc
