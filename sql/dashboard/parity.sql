-- The findings of the latest parity check of every environment (envsync_audit.parity): drift
-- (unexpected), expected (explained by a promoted migration or by design) and unknown (not checked, with
-- why); rows that are ok are left out.
with latest as (
    select
        environment,
        array_agg(run_id order by checked_at desc limit 1)[offset(0)] as run_id
    from {parity}
    where checked_at >= @since
    group by environment
)

select
    parity.environment,
    parity.dag_id,
    parity.run_id,
    parity.checked_at,
    parity.object_name,
    parity.finding,
    parity.status,
    parity.detail
from {parity} as parity
inner join latest
    on
        latest.environment = parity.environment
        and latest.run_id = parity.run_id
where
    parity.checked_at >= @since
    and parity.status in ('drift', 'expected', 'unknown')
order by parity.environment, parity.status, parity.object_name
