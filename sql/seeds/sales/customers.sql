-- Seed for sales.customers: 20 customers (ids 1 to 20), one per row, spread over the three
-- segments and eight countries; every value is a function of customer_id only.
with customer_ids as (
    select customer_id
    from unnest(generate_array(1, 20)) as customer_id
)

select
    cast(customer_id as int64) as customer_id,
    concat('Seed customer ', format('%02d', customer_id)) as name,
    ['consumer', 'small_business', 'enterprise'][offset(mod(customer_id - 1, 3))] as segment,
    ['US', 'GB', 'FR', 'DE', 'JP', 'BR', 'IN', 'CA'][offset(mod(customer_id - 1, 8))] as country
from customer_ids
order by customer_id
