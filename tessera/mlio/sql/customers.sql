select customer_key, personalization_consent
from marts.dim_customers
where not is_erasure_requested
order by customer_key
