"""The popular products: what a customer without a personal list is shown, everywhere.

One ranking, read by the published `popular_products` export (the serving API's fallback,
orchestration/publish.py) and by rendered messages for customers without personalisation
consent (tessera/decisioning/render.py): active products by distinct buyers, ties by distinct
customers with any interaction, then product id, with the recommender's diversity cap per
category. Customers who asked for erasure are not counted.
"""

from tessera.privacy.erasure import NOT_ERASED

POPULAR_PRODUCTS_SQL = f"""
    with counts as (
        -- one row per (product, customer) first, then counted: the same numbers as two
        -- count(distinct)s per product, in about half the time (docs/scaling.md)
        select product_id, count(*) filter (where bought) as buyers, count(*) as customers
        from (
            select i.product_id, i.customer_key, bool_or(i.interaction_type = 'purchase') as bought
            from marts.fct_customer_product_interactions as i
            where i.{NOT_ERASED}
            group by i.product_id, i.customer_key
        )
        group by product_id
    ),
    ranked as (
        select
            p.product_id, p.product_name, p.category,
            coalesce(c.buyers, 0) as buyers,
            coalesce(c.customers, 0) as customers,
            row_number() over (
                partition by p.category order by coalesce(c.buyers, 0) desc, coalesce(c.customers, 0) desc, p.product_id
            ) as rank_in_category
        from marts.dim_products as p
        left join counts as c on c.product_id = p.product_id
        where p.is_active
    )
    select
        row_number() over (order by buyers desc, customers desc, product_id) as rank,
        product_id, product_name, category, buyers
    from ranked
    where rank_in_category <= (select coalesce(max(max_per_category), 3) from ml.recommendation_candidates)
"""
