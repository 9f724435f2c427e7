-- The products "similar items" compares (ml/product_lists.py PRODUCT_COLUMNS): the merchandise of
-- the catalogue, inactive products too (their pages may still be visited; only active ones are
-- recommended).
select product_id, product_name, category, brand, price_band, is_active
from marts.dim_products
where product_type = 'merchandise'
order by product_id
