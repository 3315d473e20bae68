-- Per environment: its last run and its last successful run since @since, and how many runs failed.
-- A run of several environments (environment 'qa,staging') counts for each of them.
with runs as (
    select
        trim(env) as environment,
        dag_id,
        run_id,
        status,
        cut,
        recorded_at,
        objects,
        failed,
        row_count,
        est_bytes_billed,
        manifest,
        error
    from {runs}
    cross join unnest(split(environment, ',')) as env
    where
        recorded_at >= @since
        and trim(env) != ''
),

latest as (
    select *
    from runs
    where true
    qualify row_number() over (partition by environment order by recorded_at desc) = 1
),

latest_success as (
    select *
    from runs
    where status = 'success'
    qualify row_number() over (partition by environment order by recorded_at desc) = 1
),

counts as (
    select
        environment,
        count(*) as runs,
        countif(status = 'failed') as failed_runs
    from runs
    group by environment
)

select
    latest.environment,
    latest.dag_id as last_dag_id,
    latest.run_id as last_run_id,
    latest.status as last_status,
    latest.recorded_at as last_recorded_at,
    latest.error as last_error,
    latest_success.dag_id as ok_dag_id,
    latest_success.run_id as ok_run_id,
    latest_success.cut as ok_cut,
    latest_success.recorded_at as ok_recorded_at,
    latest_success.objects as ok_objects,
    latest_success.failed as ok_failed,
    latest_success.row_count as ok_row_count,
    latest_success.est_bytes_billed as ok_est_bytes_billed,
    latest_success.manifest as ok_manifest,
    counts.runs,
    counts.failed_runs
from latest
inner join counts on counts.environment = latest.environment
left join latest_success on latest_success.environment = latest.environment
order by latest.environment
