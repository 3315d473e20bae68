-- sales.orders_flat: an unpartitioned, denormalised order export with TWO date columns
-- (order_date and ship_date), so envsync cannot guess the window column: the config names it.
-- About @rows / 2 rows over the 730 days that end on @ref_date; values depend on the row id only.
create or replace table {target}
options (
    description = 'Demo prod: flat order export with two date columns (order_date, ship_date), unpartitioned.',
    labels = [('envsync_demo', 'true'), ('domain', 'sales')]
)
as
with flat_size as (
    select greatest(div(@rows, 2), 1) as row_count
),

flat_blocks as (
    select block
    from unnest(generate_array(0, 499)) as block
    cross join flat_size
    where block <= div(flat_size.row_count - 1, 100000)
),

flat_ids as (
    select
        block * 100000 + slot as order_id,
        flat_size.row_count
    from flat_blocks
    cross join unnest(generate_array(1, 100000)) as slot
    cross join flat_size
    where block * 100000 + slot <= flat_size.row_count
),

flat_orders as (
    select
        order_id,
        date_sub(
            @ref_date,
            interval if(
                row_count >= 730,
                mod(order_id - 1, 730),
                div((order_id - 1) * 729, greatest(row_count - 1, 1))
            ) day
        ) as order_date
    from flat_ids
)

select
    order_id,
    mod(order_id * 2654435761, @customers) + 1 as customer_id,
    order_date,
    if(
        mod(order_id, 10) = 0,
        null,
        least(date_add(order_date, interval 1 + mod(order_id, 6) day), @ref_date)
    ) as ship_date,
    1 + mod(order_id, 4) as item_count,
    cast(mod(order_id * 40503, 500000) + 499 as numeric) / 100 as order_total,
    ['US', 'GB', 'FR', 'DE', 'JP', 'BR', 'IN', 'CA'][offset(mod(order_id * 15485863, 8))] as shipping_country
from flat_orders
