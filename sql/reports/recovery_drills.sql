-- The latest recovery drill of every table (per environment: prod, staging): where it was restored from, RTO, RPO and the verdict.
-- Run it in the BigQuery console or with `bq query --use_legacy_sql=false < sql/reports/recovery_drills.sql`
-- (replace envsync_audit if audit.dataset is set to another dataset).
select
    coalesce(environment, 'prod') as environment,
    dataset,
    table_name,
    point_in_time,
    source_kind,
    source,
    backup_taken_at,
    round(rpo_seconds / 3600, 2) as rpo_hours,
    round(rto_seconds, 1) as rto_seconds,
    row_count,
    status,
    error,
    recorded_at,
    run_id
from envsync_audit.recovery_drills
where true
qualify row_number() over (partition by dataset, table_name order by recorded_at desc) = 1
order by status desc, environment, dataset, table_name
