-- sales.audit_log: a small unpartitioned table with a TIMESTAMP column. The config excludes it
-- from every derived environment. Between 10 and 1,000 rows (@rows / 1000), spread over the 730
-- days that end on @ref_date.
create or replace table {target}
options (
    description = 'Demo prod: audit events (small, unpartitioned). Excluded from derived environments by config.',
    labels = [('envsync_demo', 'true'), ('domain', 'sales')]
)
as
with audit_size as (
    select least(greatest(div(@rows, 1000), 10), 1000) as row_count
),

event_ids as (
    select
        event_id,
        audit_size.row_count
    from audit_size
    cross join unnest(generate_array(1, audit_size.row_count)) as event_id
)

select
    event_id,
    timestamp_add(
        timestamp(date_sub(@ref_date, interval div((event_id - 1) * 729, greatest(row_count - 1, 1)) day)),
        interval mod(event_id * 7919, 86400) second
    ) as event_at,
    concat('user-', format('%03d', mod(event_id * 104729, 50))) as actor,
    ['login', 'export', 'grant', 'revoke', 'delete'][offset(mod(event_id, 5))] as action,
    concat('sales.', ['orders', 'customers', 'orders_flat'][offset(mod(event_id * 7919, 3))]) as object_name
from event_ids
