-- each trained-on customer's pseudonymous key and internal key: the lists go back to the internal key
select customer_pkey(customer_key), customer_key
from marts.dim_customers
where customer_key not in (select customer_key from marts.dim_customers where is_erasure_requested)
