-- publish.product_recommendations: rows naming their own product or an inactive or unknown one,
-- plus (product, list) groups whose ranks are not 1..n each once, plus rows of an unknown list
with bad_groups as (
    select product_id, list_name
    from {table}
    group by product_id, list_name
    having min(rank) <> 1 or max(rank) <> count(*) or count(distinct rank) <> count(*)
)
select
    (select count(*) from {table} as r
     left join marts.dim_products as p on p.product_id = r.recommended_product_id
     where r.recommended_product_id = r.product_id or p.product_id is null or not coalesce(p.is_active, false)
        or r.list_name not in ('bought_together', 'viewed_together', 'similar'))
    + (select count(*) from bad_groups)
