-- The interactions (26M rows at 1M customers) arrive as integer codes, each key column labelled
-- once (interactions.sql, then one "select label from <codes> order by code" per key). Codes follow
-- the labels' sort order, so the rows come in the same fixed order as sorting by the keys
-- themselves: a table's physical row order may change between builds (parallel joins and
-- windows), and LightFM's fit depends on the order interactions arrive in. Customers are known by
-- customer_pkey (the order is the pkeys').
with customer_codes as (
    select customer_key, customer_pkey(customer_key) as label,
        cast(row_number() over (order by customer_pkey(customer_key)) - 1 as integer) as code
    from marts.dim_customers
    where not is_erasure_requested
),
product_codes as (
    select product_id as label, product_id, cast(row_number() over (order by product_id) - 1 as integer) as code
    from (select distinct product_id from marts.fct_customer_product_interactions where product_id is not null)
),
type_codes as (
    select interaction_type as label, interaction_type,
        cast(row_number() over (order by interaction_type) - 1 as smallint) as code
    from (select distinct interaction_type from marts.fct_customer_product_interactions where interaction_type is not null)
)
