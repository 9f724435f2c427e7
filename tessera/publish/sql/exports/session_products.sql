-- The products of the session index with their names and categories (for the API's responses)
-- and the number of sessions that touched each (the popular fallback's order).
select s.product_id, p.product_name, p.category, count(*) as sessions
from {table} as s
inner join marts.dim_products as p on p.product_id = s.product_id
group by s.product_id, p.product_name, p.category
order by sessions desc, s.product_id
