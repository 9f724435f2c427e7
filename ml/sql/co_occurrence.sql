-- "Bought together" / "viewed together" (ml/product_lists.py): for each product, the products
-- most often in the same basket (an order, a browsing session), scored by {score} (SCORES: the
-- cosine support / sqrt(na * nb) unless the caller picks another). Portable SQL: Spark gives the
-- same lists with :name for the $name markers (tests/test_product_lists.py, marked spark).
-- {baskets}: (basket_id, product_id) rows, duplicates allowed; {targets}: (product_id) the
-- products a list may name (active products). $min_support: pairs seen in fewer baskets are left
-- out; $max_basket_items: larger baskets count for their products' totals but make no pairs;
-- $top_n: list length.
-- Memory: the pair aggregation holds one group per distinct pair (tens of millions at 1M
-- customers), so products and baskets are joined and grouped as integer codes, not as text, and
-- baskets too large to make pairs leave before the self-join.
with items as (
    select distinct cast(basket_id as string) as basket_id, cast(product_id as string) as product_id
    from ({baskets}) as b
    where basket_id is not null and product_id is not null
),
product_codes as (
    select product_id, row_number() over (order by product_id) as product_code
    from (select distinct product_id from items) as p
),
basket_codes as (
    select basket_id, row_number() over (order by basket_id) as basket_code, basket_items
    from (select basket_id, count(*) as basket_items from items group by basket_id) as s
),
product_baskets as (
    select c.product_code, count(*) as baskets
    from items as i
    inner join product_codes as c on c.product_id = i.product_id
    group by c.product_code
),
totals as (
    select count(distinct basket_id) as baskets from items
),
targets as (
    select c.product_code
    from product_codes as c
    where c.product_id in (select cast(product_id as string) from ({targets}) as t)
),
pairable as (
    select b.basket_code, c.product_code
    from items as i
    inner join basket_codes as b on b.basket_id = i.basket_id
    inner join product_codes as c on c.product_id = i.product_id
    where b.basket_items > 1 and b.basket_items <= $max_basket_items
),
pairs as (
    select a.product_code, b.product_code as recommended_code, count(*) as support
    from pairable as a
    inner join pairable as b on b.basket_code = a.basket_code and b.product_code <> a.product_code
    inner join targets as t on t.product_code = b.product_code
    group by a.product_code, b.product_code
    having count(*) >= $min_support
),
scored as (
    select
        p.product_code,
        p.recommended_code,
        {score} as score,
        p.support
    from pairs as p
    inner join product_baskets as na on na.product_code = p.product_code
    inner join product_baskets as nb on nb.product_code = p.recommended_code
    cross join totals as n
),
ranked as (
    select
        ca.product_id,
        cb.product_id as recommended_product_id,
        s.score,
        s.support,
        row_number() over (
            partition by s.product_code order by s.score desc, s.support desc, cb.product_id
        ) as rank
    from scored as s
    inner join product_codes as ca on ca.product_code = s.product_code
    inner join product_codes as cb on cb.product_code = s.recommended_code
)
select product_id, rank, recommended_product_id, score, support
from ranked
where rank <= $top_n
