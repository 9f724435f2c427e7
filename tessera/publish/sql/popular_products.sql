-- The popular products (tessera/publish/popular.py): active products by distinct buyers, ties by
-- distinct customers with any interaction, then by distinct browsers (anonymous_id) that viewed
-- or carted them, known customer or not, then product id, at most the recommender's
-- max_per_category per category. The browsers rank a shop whose clickstream is all it has
-- (anonymous visitors: no customer, no order; docs/landing_contract.md, "Partial shops").
-- {not_erased}: the erasure filter of the models (tessera/privacy/erasure.py NOT_ERASED) on the
-- interactions and the events of known customers.
with counts as (
    -- one row per (product, customer) first, then counted: the same numbers as two
    -- count(distinct)s per product, in about half the time (docs/scaling.md)
    select product_id, count(*) filter (where bought) as buyers, count(*) as customers
    from (
        select i.product_id, i.customer_key, bool_or(i.interaction_type = 'purchase') as bought
        from marts.fct_customer_product_interactions as i
        where i.{not_erased}
        group by i.product_id, i.customer_key
    )
    group by product_id
),
browsed as (
    select product_id, count(distinct anonymous_id) as visitors
    from marts.fct_events as e
    where e.product_id is not null
      and e.event_type in ('product_view', 'add_to_cart')
      and (e.customer_key is null or e.{not_erased})
    group by product_id
),
ranked as (
    select
        p.product_id, p.product_name, p.category,
        coalesce(c.buyers, 0) as buyers,
        coalesce(c.customers, 0) as customers,
        coalesce(b.visitors, 0) as visitors,
        row_number() over (
            partition by p.category
            order by coalesce(c.buyers, 0) desc, coalesce(c.customers, 0) desc, coalesce(b.visitors, 0) desc, p.product_id
        ) as rank_in_category
    from marts.dim_products as p
    left join counts as c on c.product_id = p.product_id
    left join browsed as b on b.product_id = p.product_id
    where p.is_active
)
select
    row_number() over (order by buyers desc, customers desc, visitors desc, product_id) as rank,
    product_id, product_name, category, buyers, visitors
from ranked
where rank_in_category <= (select coalesce(max(max_per_category), 3) from ml.recommendation_candidates)
