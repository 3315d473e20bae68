-- Seed for sales.orders_flat: the flat export of the 30 odd-numbered orders (1, 3, ..., 59) of the
-- orders seed, so spread over 2026 like them: one row per order with the same customer, order date,
-- item count, total of its line items and shipping country. ship_date is null for placed (not yet
-- shipped) orders, otherwise 1 to 6 days after order_date, at most 2026-12-31. Every value is a
-- function of order_id only.
with order_ids as (
    select order_id
    from unnest(generate_array(1, 59, 2)) as order_id
),

order_lines as (
    select
        order_ids.order_id,
        line_number
    from order_ids
    cross join unnest(generate_array(1, 4)) as line_number
    where line_number <= 1 + mod(order_ids.order_id, 4)
),

order_totals as (
    select
        order_id,
        count(*) as item_count,
        sum(
            (1 + mod(order_id + line_number, 5))
            * (cast(mod(order_id * 40503 + line_number * 15485863, 20000) + 99 as numeric) / 100)
        ) as order_total
    from order_lines
    group by order_id
),

flat_orders as (
    select
        order_ids.order_id,
        date_add(date '2026-01-01', interval div((order_ids.order_id - 1) * 364, 59) day) as order_date,
        ['placed', 'shipped', 'delivered', 'delivered', 'returned'][offset(mod(order_ids.order_id * 3, 5))] as status,
        order_totals.item_count,
        order_totals.order_total
    from order_ids
    inner join order_totals
        on order_ids.order_id = order_totals.order_id
)

select
    cast(order_id as int64) as order_id,
    cast(mod(order_id * 7, 20) + 1 as int64) as customer_id,
    order_date,
    if(
        status = 'placed',
        cast(null as date),
        least(date_add(order_date, interval 1 + mod(order_id, 6) day), date '2026-12-31')
    ) as ship_date,
    cast(item_count as int64) as item_count,
    cast(order_total as numeric) as order_total,
    ['US', 'GB', 'FR', 'DE', 'JP', 'BR', 'IN', 'CA'][offset(mod(order_id, 8))] as shipping_country
from flat_orders
order by order_id
