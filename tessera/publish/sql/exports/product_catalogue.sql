-- Every product id of the catalogue (dim_products) and whether it is active: the serving API
-- answers 404 for an id outside it, and an empty list for a known product without one
select product_id, is_active from marts.dim_products order by product_id
