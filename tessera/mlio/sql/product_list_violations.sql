-- ml.product_recommendations against its rules: one row of counts, each 0 when the rule holds
with r as (select * from ml.product_recommendations),
groups as (
    select product_id, list_name
    from r
    group by product_id, list_name
    having min(rank) <> 1 or max(rank) <> count(*) or count(distinct rank) <> count(*)
)
select
    count(*) filter (where r.recommended_product_id = r.product_id) as self_recommendations,
    count(*) filter (where p.product_id is not null and not coalesce(p.is_active, false)) as inactive_recommendations,
    count(*) filter (where p.product_id is null) as unknown_recommended_products,
    (select count(*) from groups) as lists_with_gaps_in_ranks
from r
left join marts.dim_products as p on p.product_id = r.recommended_product_id
