-- publish.customer_recommendations: the champion recommender's lists, active products only
select customer_pkey(r.customer_key) as customer_pkey, r.rank, r.product_id, p.product_name, p.category, r.score, r.source,
    r.model_run_id, r.model_version
from ml.recommendation_candidates as r
inner join audiences.active_customers as c on c.customer_key = r.customer_key
inner join marts.dim_products as p on p.product_id = r.product_id and p.is_active
order by customer_pkey, r.rank
