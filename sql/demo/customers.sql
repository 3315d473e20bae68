-- sales.customers: a dimension with no date or timestamp column at all, so envsync copies it whole.
-- Size: @customers rows (derived from the demo size by envsync.dev.demo); every value is a function of
-- customer_id only, so two runs produce identical contents.
create or replace table {target}
options (
    description = 'Demo prod: one row per customer. A dimension without any date column.',
    labels = [('envsync_demo', 'true'), ('domain', 'sales')]
)
as
-- Row ids come from blocks of 100,000: one huge generate_array would be a single oversized array.
with customer_blocks as (
    select block
    from unnest(generate_array(0, 499)) as block
    where block <= div(@customers - 1, 100000)
),

customer_ids as (
    select block * 100000 + slot as customer_id
    from customer_blocks
    cross join unnest(generate_array(1, 100000)) as slot
    where block * 100000 + slot <= @customers
)

select
    customer_id,
    concat('Customer ', format('%07d', customer_id)) as name,
    ['consumer', 'small_business', 'enterprise'][offset(mod(customer_id * 7919, 3))] as segment,
    ['US', 'GB', 'FR', 'DE', 'JP', 'BR', 'IN', 'CA'][offset(mod(customer_id * 104729, 8))] as country
from customer_ids
