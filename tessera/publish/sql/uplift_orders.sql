-- the orders publish.campaign_uplift counts: completed ones, revenue in the base currency
select customer_key, ordered_at, net_revenue_base as revenue from marts.fct_orders where status = 'completed'
