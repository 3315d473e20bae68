-- marketing.campaigns: a small dimension with no date column. @campaigns rows, values derived
-- from campaign_id only.
create or replace table {target}
options (
    description = 'Demo prod: one row per marketing campaign. A dimension without any date column.',
    labels = [('envsync_demo', 'true'), ('domain', 'marketing')]
)
as
with campaign_ids as (
    select campaign_id
    from unnest(generate_array(1, @campaigns)) as campaign_id
)

select
    campaign_id,
    concat('Campaign ', format('%04d', campaign_id)) as campaign_name,
    ['search', 'social', 'display', 'email', 'video'][offset(mod(campaign_id, 5))] as channel,
    ['awareness', 'acquisition', 'retention'][offset(mod(campaign_id * 7919, 3))] as objective,
    cast(1000 + mod(campaign_id * 40503, 49000) as numeric) as monthly_budget
from campaign_ids
