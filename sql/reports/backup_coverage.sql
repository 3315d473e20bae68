-- Backup coverage per prod table: its newest backup, how old it is, and how many backups were taken
-- and thinned in the last 7 days (from the backup_ladder runs' table actions).
-- (replace envsync_audit if audit.dataset is set to another dataset)
select
    table_name,
    max(if(action in ('snapshot', 'pin') and status = 'ok', recorded_at, null)) as newest_backup_at,
    timestamp_diff(
        current_timestamp(),
        max(if(action in ('snapshot', 'pin') and status = 'ok', recorded_at, null)),
        minute
    ) as minutes_since_newest_backup,
    countif(action = 'snapshot' and status = 'ok') as ladder_snapshots_7d,
    countif(action = 'pin' and status = 'ok') as pinned_backups_7d,
    countif(action = 'drop' and status = 'dropped') as thinned_7d,
    countif(status = 'failed') as failed_7d
from envsync_audit.table_actions
where
    dag_id = 'backup_ladder'
    and recorded_at >= timestamp_sub(current_timestamp(), interval 7 day)
group by table_name
order by minutes_since_newest_backup desc
