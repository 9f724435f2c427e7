select product_id, category, brand, price_band, is_active from marts.dim_products order by product_id
