-- Seed for marketing.campaigns: 6 marketing campaigns (ids 1 to 6), one per row, covering every
-- channel but one and every objective; every value is a function of campaign_id only.
with campaign_ids as (
    select campaign_id
    from unnest(generate_array(1, 6)) as campaign_id
)

select
    cast(campaign_id as int64) as campaign_id,
    concat('Seed campaign ', format('%02d', campaign_id)) as campaign_name,
    ['search', 'social', 'display', 'email', 'video'][offset(mod(campaign_id - 1, 5))] as channel,
    ['awareness', 'acquisition', 'retention'][offset(mod(campaign_id - 1, 3))] as objective,
    cast(1000 + 250 * campaign_id as numeric) as monthly_budget
from campaign_ids
order by campaign_id
