-- "Bought together" baskets (ml/product_lists.py): one row per (order, merchandise product) of the
-- sale lines of completed orders of every channel, store receipts without a known customer too
-- (a basket needs no customer); orders of customers who asked for erasure are left out.
select i.order_id as basket_id, i.product_id
from marts.fct_order_items as i
inner join marts.dim_products as p on p.product_id = i.product_id and p.product_type = 'merchandise'
where i.line_type = 'sale'
  and i.status = 'completed'
  and (i.customer_key is null or i.customer_key not in (select customer_key from marts.dim_customers where is_erasure_requested))
