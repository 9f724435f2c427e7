-- only the columns clustering reads (ml.clustering.BEHAVIOURAL_FEATURES): the mart has ~40
select
    customer_key, recency_days, frequency, monetary, average_order_value, sessions, product_views,
    cart_adds, email_open_rate, email_click_rate, app_order_share, pos_order_share, mobile_event_share
from marts.customer_features
where customer_key not in (select customer_key from marts.dim_customers where is_erasure_requested)
order by customer_key
