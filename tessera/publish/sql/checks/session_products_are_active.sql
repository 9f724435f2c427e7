-- Violations: rows of {table} naming a product that is not an active product of dim_products.
select count(*) from {table} as s
where not exists (select 1 from marts.dim_products as p where p.product_id = s.product_id and p.is_active)
