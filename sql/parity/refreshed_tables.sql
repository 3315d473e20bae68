-- Every table action of the refresh DAGs since @since, with its run's cut T, window and status:
-- the parity check derives from them the last successful refresh of every environment dataset and
-- of every table (envsync.environments.parity.refreshes).
select
    actions.target,
    actions.status as action_status,
    runs.dag_id,
    runs.run_id,
    runs.status as run_status,
    runs.cut,
    runs.window_start,
    runs.window_end
from {actions} as actions
inner join {runs} as runs
    on
        runs.dag_id = actions.dag_id
        and runs.run_id = actions.run_id
where
    actions.recorded_at >= @since
    and runs.recorded_at >= @since
    and actions.dag_id in unnest(@dag_ids)
    and runs.cut is not null
