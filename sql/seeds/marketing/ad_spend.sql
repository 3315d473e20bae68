-- Seed for marketing.ad_spend: 30 daily spend records (ids 1 to 30), one per row, on days spread
-- evenly over 2026 from 2026-01-01 to 2026-12-31, five per campaign of the campaigns seed (1 to 6),
-- across the four ad networks. Every value is a function of spend_id only.
with spend_ids as (
    select spend_id
    from unnest(generate_array(1, 30)) as spend_id
)

select
    cast(spend_id as int64) as spend_id,
    cast(mod(spend_id - 1, 6) + 1 as int64) as campaign_id,
    date_add(date '2026-01-01', interval div((spend_id - 1) * 364, 29) day) as spend_date,
    ['google', 'meta', 'linkedin', 'tiktok'][offset(mod(spend_id - 1, 4))] as network,
    cast(1000 + mod(spend_id * 40503, 99000) as int64) as impressions,
    cast(mod(spend_id * 104729, 1000) as int64) as clicks,
    cast(mod(spend_id * 15485863, 1000000) + 100 as numeric) / 100 as cost
from spend_ids
order by spend_id
