-- marketing.campaign_revenue: a view across both prod datasets. One reference is project-qualified
-- in backticks ({orders}); the others are dataset.table ({campaigns}, {customers}), so envsync's view
-- rewriting has to handle both forms.
create or replace view {target}
options (
    description = 'Demo prod: revenue per campaign and customer segment (sales.orders x marketing.campaigns).',
    labels = [('envsync_demo', 'true'), ('domain', 'marketing')]
)
as
with order_revenue as (
    select
        orders.order_id,
        orders.campaign_id,
        orders.customer_id,
        sum(item.quantity * item.unit_price) as revenue
    from {orders} as orders
    cross join unnest(orders.items) as item
    group by
        orders.order_id,
        orders.campaign_id,
        orders.customer_id
)

select
    campaigns.campaign_id,
    campaigns.campaign_name,
    campaigns.channel,
    customers.segment,
    count(*) as orders,
    sum(order_revenue.revenue) as revenue
from order_revenue
inner join {campaigns} as campaigns
    on order_revenue.campaign_id = campaigns.campaign_id
inner join {customers} as customers
    on order_revenue.customer_id = customers.customer_id
group by
    campaigns.campaign_id,
    campaigns.campaign_name,
    campaigns.channel,
    customers.segment
