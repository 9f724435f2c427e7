-- "Bought together" / "viewed together" (ml/product_lists.py): for each product, the products
-- most often in the same basket (an order, a browsing session), scored by {score} (SCORES: the
-- cosine support / sqrt(na * nb) unless the caller picks another). Portable SQL: Spark gives the
-- same lists with :name for the $name markers (tests/test_product_lists.py, marked spark).
-- {baskets}: (basket_id, product_id) rows, duplicates allowed; {targets}: (product_id) the
-- products a list may name (active products). $min_support: pairs seen in fewer baskets are left
-- out; $max_basket_items: larger baskets count for their products' totals but make no pairs;
-- $top_n: list length.
with items as (
    select distinct cast(basket_id as string) as basket_id, cast(product_id as string) as product_id
    from ({baskets}) as b
    where basket_id is not null and product_id is not null
),
sized as (
    select basket_id, product_id, count(*) over (partition by basket_id) as basket_items
    from items
),
product_baskets as (
    select product_id, count(*) as baskets from items group by product_id
),
totals as (
    select count(distinct basket_id) as baskets from items
),
targets as (
    select distinct cast(product_id as string) as product_id from ({targets}) as t
),
pairs as (
    select a.product_id, b.product_id as recommended_product_id, count(*) as support
    from sized as a
    inner join sized as b on b.basket_id = a.basket_id and b.product_id <> a.product_id
    inner join targets as t on t.product_id = b.product_id
    where a.basket_items <= $max_basket_items
    group by a.product_id, b.product_id
    having count(*) >= $min_support
),
scored as (
    select
        p.product_id,
        p.recommended_product_id,
        {score} as score,
        p.support
    from pairs as p
    inner join product_baskets as na on na.product_id = p.product_id
    inner join product_baskets as nb on nb.product_id = p.recommended_product_id
    cross join totals as n
),
ranked as (
    select
        *,
        row_number() over (
            partition by product_id order by score desc, support desc, recommended_product_id
        ) as rank
    from scored
)
select product_id, rank, recommended_product_id, score, support
from ranked
where rank <= $top_n
