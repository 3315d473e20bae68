-- marketing.ad_spend: unpartitioned, with exactly one DATE column (spend_date) and no timestamp,
-- so envsync detects the window column by itself. About @rows / 20 rows over the 730 days that end
-- on @ref_date; values depend on the row id only.
create or replace table {target}
options (
    description = 'Demo prod: daily ad spend per campaign, unpartitioned, one DATE column.',
    labels = [('envsync_demo', 'true'), ('domain', 'marketing')]
)
as
with spend_size as (
    select greatest(div(@rows, 20), 1) as row_count
),

spend_blocks as (
    select block
    from unnest(generate_array(0, 499)) as block
    cross join spend_size
    where block <= div(spend_size.row_count - 1, 100000)
),

spend_ids as (
    select
        block * 100000 + slot as spend_id,
        spend_size.row_count
    from spend_blocks
    cross join unnest(generate_array(1, 100000)) as slot
    cross join spend_size
    where block * 100000 + slot <= spend_size.row_count
)

select
    spend_id,
    mod(spend_id - 1, @campaigns) + 1 as campaign_id,
    date_sub(
        @ref_date,
        interval if(
            row_count >= 730,
            mod(spend_id - 1, 730),
            div((spend_id - 1) * 729, greatest(row_count - 1, 1))
        ) day
    ) as spend_date,
    ['google', 'meta', 'linkedin', 'tiktok'][offset(mod(spend_id * 7919, 4))] as network,
    1000 + mod(spend_id * 40503, 99000) as impressions,
    mod(spend_id * 104729, 1000) as clicks,
    cast(mod(spend_id * 15485863, 1000000) + 100 as numeric) / 100 as cost
from spend_ids
