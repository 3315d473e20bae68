-- marketing.sessions: web sessions, partitioned by MONTH on the TIMESTAMP session_start over the
-- 730 days that end on @ref_date (the last day's sessions run until 23:59:59 UTC of @ref_date).
-- @rows rows; values depend on session_id and @ref_date only.
create or replace table {target}
partition by timestamp_trunc(session_start, month)
cluster by campaign_id
options (
    description = 'Demo prod: one row per web session, monthly partitions on session_start.',
    labels = [('envsync_demo', 'true'), ('domain', 'marketing')]
)
as
-- Row ids come from blocks of 100,000: one huge generate_array would be a single oversized array.
with session_blocks as (
    select block
    from unnest(generate_array(0, 499)) as block
    where block <= div(@rows - 1, 100000)
),

session_ids as (
    select block * 100000 + slot as session_id
    from session_blocks
    cross join unnest(generate_array(1, 100000)) as slot
    where block * 100000 + slot <= @rows
),

session_days as (
    select
        session_id,
        date_sub(
            @ref_date,
            interval if(
                @rows >= 730,
                mod(session_id * 7, 730),
                div((session_id - 1) * 729, greatest(@rows - 1, 1))
            ) day
        ) as session_date
    from session_ids
)

select
    session_id,
    if(mod(session_id, 3) = 0, null, mod(session_id * 2654435761, @customers) + 1) as customer_id,
    mod(session_id * 7919, @campaigns) + 1 as campaign_id,
    timestamp_add(timestamp(session_date), interval mod(session_id * 104729, 86400) second) as session_start,
    10 + mod(session_id * 40503, 1800) as duration_seconds,
    ['desktop', 'mobile', 'tablet'][offset(mod(session_id * 15485863, 3))] as device,
    ['/', '/pricing', '/blog', '/signup', '/docs'][offset(mod(session_id, 5))] as landing_page
from session_days
