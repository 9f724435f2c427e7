-- The products "similar items" compares (ml/product_lists.py PRODUCT_COLUMNS): the merchandise of
-- the catalogue, inactive products too (as seeds: a list is built for them, though only sellable
-- products' lists are published). is_active here means for sale: active and not priced at zero
-- (a real export holds "damaged" and "Unknown" lines at 0.00, which no list may recommend).
select
    product_id,
    product_name,
    category,
    brand,
    price_band,
    is_active and coalesce(price_base > 0, true) as is_active
from marts.dim_products
where product_type = 'merchandise'
order by product_id
