-- The latest parity check of every environment: its unexpected differences from prod, the expected
-- ones (migrations promoted to it, by design), its freshness, and the findings themselves.
-- Run it in the BigQuery console or with `bq query --use_legacy_sql=false < sql/reports/latest_parity.sql`
-- (replace envsync_audit if audit.dataset is set to another dataset).
with
latest_checks as (
    select
        environment,
        run_id,
        checked_at
    from envsync_audit.parity
    where true
    qualify row_number() over (partition by environment order by checked_at desc) = 1
),

latest_findings as (
    select parity.*
    from envsync_audit.parity as parity
    inner join latest_checks
        on
            parity.environment = latest_checks.environment
            and parity.run_id = latest_checks.run_id
            and parity.checked_at = latest_checks.checked_at
)

select
    environment,
    any_value(checked_at) as checked_at,
    any_value(run_id) as run_id,
    countif(status = 'drift') as drift,
    countif(status = 'expected') as expected,
    countif(status = 'unknown') as unknown,
    min(refreshed_cut) as oldest_refresh_cut,
    max(age_hours) as max_age_hours,
    array_agg(
        if(status = 'drift', concat(finding, ' ', object_name, ': ', coalesce(detail, '')), null)
        ignore nulls order by finding, object_name limit 20
    ) as drift_findings
from latest_findings
group by environment
order by environment
