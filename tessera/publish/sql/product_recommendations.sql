-- publish.product_recommendations: the lists per product (ml.product_recommendations,
-- ml/product_lists.py), with the recommended product's name and category; products for sale only,
-- on both sides (active and not priced at zero, as tessera/mlio/sql/product_catalogue.sql): a
-- product not for sale (a fee, postage, a voucher, withdrawn, a "damaged" line at 0.00) gets no
-- published list, as it gets no place on any list
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
inner join marts.dim_products as p
    on p.product_id = r.recommended_product_id and p.is_active and coalesce(p.price_base > 0, true)
inner join marts.dim_products as seed
    on seed.product_id = r.product_id and seed.is_active and coalesce(seed.price_base > 0, true)
order by r.product_id, r.list_name, r.rank
