-- publish.product_recommendations: the lists per product (ml.product_recommendations,
-- ml/product_lists.py), with the recommended product's name and category; active products only
select
    r.product_id,
    r.list_name,
    r.rank,
    r.recommended_product_id,
    p.product_name,
    p.category,
    r.score,
    r.support
from ml.product_recommendations as r
inner join marts.dim_products as p on p.product_id = r.recommended_product_id and p.is_active
order by r.product_id, r.list_name, r.rank
