-- The findings of the latest parity check of every environment (envsync_audit.parity).
with latest as (
    select
        environment,
        max(recorded_at) as recorded_at
    from {parity}
    where recorded_at >= @since
    group by environment
)

select
    parity.environment,
    parity.dag_id,
    parity.run_id,
    parity.recorded_at,
    parity.object,
    parity.finding
from {parity} as parity
inner join latest
    on
        latest.environment = parity.environment
        and latest.recorded_at = parity.recorded_at
where parity.recorded_at >= @since
order by parity.environment, parity.object
