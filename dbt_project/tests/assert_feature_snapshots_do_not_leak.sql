-- Point-in-time correctness: no feature of a snapshot may use an input at or after its cutoff.
select customer_key, as_of_date, last_input_at
from {{ ref('customer_feature_snapshots') }}
where last_input_at >= as_of_date
