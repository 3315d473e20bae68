-- The last run of every DAG on every environment: when, as of which T and window, how it ended.
-- Run it in the BigQuery console or with `bq query --use_legacy_sql=false < sql/reports/last_runs_per_environment.sql`
-- (replace envsync_audit if audit.dataset is set to another dataset).
select
    environment,
    dag_id,
    run_id,
    run_type,
    status,
    cut,
    window_start,
    window_end,
    round(duration_seconds, 1) as duration_seconds,
    objects,
    failed,
    row_count,
    est_bytes_billed,
    error,
    recorded_at
from envsync_audit.runs
where true
qualify row_number() over (partition by environment, dag_id order by recorded_at desc) = 1
order by environment, dag_id
