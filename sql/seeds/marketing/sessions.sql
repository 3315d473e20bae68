-- Seed for marketing.sessions: 40 web sessions (ids 1 to 40), one per row, starting on days spread
-- evenly over 2026 from 2026-01-01 to 2026-12-31 (session_start is never null) at a time of day
-- derived from session_id. Every third session is anonymous (no customer); the others belong to a
-- customer of the customers seed (1 to 20). Every session comes from a campaign of the campaigns
-- seed (1 to 6). Every value is a function of session_id only.
with session_ids as (
    select session_id
    from unnest(generate_array(1, 40)) as session_id
)

select
    cast(session_id as int64) as session_id,
    if(mod(session_id, 3) = 0, cast(null as int64), cast(mod(session_id * 3, 20) + 1 as int64)) as customer_id,
    cast(mod(session_id * 5, 6) + 1 as int64) as campaign_id,
    timestamp_add(
        timestamp '2026-01-01 00:00:00+00',
        interval div((session_id - 1) * 364, 39) * 86400 + mod(session_id * 104729, 86400) second
    ) as session_start,
    cast(10 + mod(session_id * 40503, 1800) as int64) as duration_seconds,
    ['desktop', 'mobile', 'tablet'][offset(mod(session_id, 3))] as device,
    ['/', '/pricing', '/blog', '/signup', '/docs'][offset(mod(session_id * 7, 5))] as landing_page
from session_ids
order by session_id
