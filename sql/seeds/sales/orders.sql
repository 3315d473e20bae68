-- Seed for sales.orders: 60 orders (ids 1 to 60), one per row, spread evenly over 2026 from
-- 2026-01-01 to 2026-12-31 (order_date is never null), each with 1 to 4 line items and a shipping
-- address. Customers come from the customers seed (1 to 20), campaigns from the campaigns seed
-- (1 to 6; every fifth order has none). Every value is a function of order_id only; the odd-numbered
-- orders are the ones the orders_flat seed exports.
with order_ids as (
    select order_id
    from unnest(generate_array(1, 60)) as order_id
),

order_lines as (
    select
        order_ids.order_id,
        line_number
    from order_ids
    cross join unnest(generate_array(1, 4)) as line_number
    where line_number <= 1 + mod(order_ids.order_id, 4)
),

order_items as (
    select
        order_id,
        array_agg(
            struct(
                concat('SKU-', format('%05d', mod(order_id * 31 + line_number * 7919, 2000))) as sku,
                cast(1 + mod(order_id + line_number, 5) as int64) as quantity,
                cast(mod(order_id * 40503 + line_number * 15485863, 20000) + 99 as numeric) / 100 as unit_price
            )
            order by line_number
        ) as items
    from order_lines
    group by order_id
)

select
    cast(order_ids.order_id as int64) as order_id,
    date_add(date '2026-01-01', interval div((order_ids.order_id - 1) * 364, 59) day) as order_date,
    cast(mod(order_ids.order_id * 7, 20) + 1 as int64) as customer_id,
    if(
        mod(order_ids.order_id, 5) = 0,
        cast(null as int64),
        cast(mod(order_ids.order_id, 6) + 1 as int64)
    ) as campaign_id,
    ['placed', 'shipped', 'delivered', 'delivered', 'returned'][offset(mod(order_ids.order_id * 3, 5))] as status,
    order_items.items,
    struct(
        ['New York', 'London', 'Paris', 'Berlin', 'Tokyo', 'Sao Paulo', 'Mumbai', 'Toronto'][offset(mod(order_ids.order_id, 8))] as city,
        ['US', 'GB', 'FR', 'DE', 'JP', 'BR', 'IN', 'CA'][offset(mod(order_ids.order_id, 8))] as country
    ) as shipping
from order_ids
inner join order_items
    on order_ids.order_id = order_items.order_id
order by order_ids.order_id
