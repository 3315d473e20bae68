-- sales.orders: the fact table. DAY-partitioned on order_date over the 730 days that end on
-- @ref_date (with @rows >= 730 every one of those days holds orders, quarter boundaries included;
-- fewer rows are spread evenly from @ref_date back 729 days). Nested repeated line items and a
-- shipping struct. Every value is a function of order_id and @ref_date only.
create or replace table {target}
partition by order_date
cluster by customer_id
options (
    description = 'Demo prod: one row per order, two years of history up to the reference date, with nested line items.',
    labels = [('envsync_demo', 'true'), ('domain', 'sales')]
)
as
-- Row ids come from blocks of 100,000: one huge generate_array would be a single oversized array.
with order_blocks as (
    select block
    from unnest(generate_array(0, 499)) as block
    where block <= div(@rows - 1, 100000)
),

order_ids as (
    select block * 100000 + slot as order_id
    from order_blocks
    cross join unnest(generate_array(1, 100000)) as slot
    where block * 100000 + slot <= @rows
),

orders_with_age as (
    select
        order_id,
        if(
            @rows >= 730,
            mod(order_id - 1, 730),
            div((order_id - 1) * 729, greatest(@rows - 1, 1))
        ) as days_before_ref
    from order_ids
)

select
    order_id,
    date_sub(@ref_date, interval days_before_ref day) as order_date,
    mod(order_id * 2654435761, @customers) + 1 as customer_id,
    if(mod(order_id, 5) = 0, null, mod(order_id * 7919, @campaigns) + 1) as campaign_id,
    ['placed', 'shipped', 'delivered', 'delivered', 'returned'][offset(mod(order_id * 104729, 5))] as status,
    -- 1 to 4 line items: the first 1 + mod(order_id, 4) of four candidate lines (offsets inclusive)
    array_slice(
        [
            struct(
                concat('SKU-', format('%05d', mod(order_id * 31 + 1 * 7919, 2000))) as sku,
                1 + mod(order_id + 1, 5) as quantity,
                cast(mod(order_id * 40503 + 1 * 15485863, 20000) + 99 as numeric) / 100 as unit_price
            ),
            struct(
                concat('SKU-', format('%05d', mod(order_id * 31 + 2 * 7919, 2000))) as sku,
                1 + mod(order_id + 2, 5) as quantity,
                cast(mod(order_id * 40503 + 2 * 15485863, 20000) + 99 as numeric) / 100 as unit_price
            ),
            struct(
                concat('SKU-', format('%05d', mod(order_id * 31 + 3 * 7919, 2000))) as sku,
                1 + mod(order_id + 3, 5) as quantity,
                cast(mod(order_id * 40503 + 3 * 15485863, 20000) + 99 as numeric) / 100 as unit_price
            ),
            struct(
                concat('SKU-', format('%05d', mod(order_id * 31 + 4 * 7919, 2000))) as sku,
                1 + mod(order_id + 4, 5) as quantity,
                cast(mod(order_id * 40503 + 4 * 15485863, 20000) + 99 as numeric) / 100 as unit_price
            )
        ],
        0,
        mod(order_id, 4)
    ) as items,
    struct(
        ['New York', 'London', 'Paris', 'Berlin', 'Tokyo', 'Sao Paulo', 'Mumbai', 'Toronto'][offset(mod(order_id * 15485863, 8))] as city,
        ['US', 'GB', 'FR', 'DE', 'JP', 'BR', 'IN', 'CA'][offset(mod(order_id * 15485863, 8))] as country
    ) as shipping
from orders_with_age
