-- Per prod table: the pinned snapshots taken since @since (their names), and the last backup run since
-- @recent with its status; from the backup_ladder runs' table actions. Only pins are read over the long
-- range: the hourly snapshot actions of the last @recent days are enough for the last run.
select
    table_name,
    array_agg(if(action = 'pin' and status = 'ok', target, null) ignore nulls) as pinned,
    array_agg(
        struct(dag_id as dag_id, run_id as run_id, status as status, recorded_at as recorded_at)
        order by recorded_at desc limit 1
    )[offset(0)] as last_action
from {actions}
where
    recorded_at >= @since
    and dag_id = 'backup_ladder'
    and action in ('snapshot', 'pin', 'skip')
    and (action = 'pin' or recorded_at >= @recent)
group by table_name
