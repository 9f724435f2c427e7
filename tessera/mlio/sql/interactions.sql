-- follows interaction_codes.sql
select c.code as customer_key, p.code as product_id, t.code as interaction_type, f.occurred_at
from marts.fct_customer_product_interactions as f
join customer_codes as c using (customer_key)
join product_codes as p using (product_id)
join type_codes as t using (interaction_type)
order by c.code, p.code, f.occurred_at, t.code
