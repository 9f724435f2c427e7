-- ml.recommendation_candidates against the published rules: one row of counts, each 0 when they hold
with r as (select * from ml.recommendation_candidates),
counts as (
    select
        count(*) filter (where c.customer_key is null) as unknown_customers,
        count(*) filter (where p.product_id is null or not p.is_active) as inactive_or_unknown_products,
        count(*) filter (where r.rank < 1 or r.rank > r.top_n) as ranks_out_of_range,
        count(*) filter (where not c.personalization_consent and r.source <> 'popularity') as personalised_without_consent
    from r
    left join marts.dim_customers as c on c.customer_key = r.customer_key
    left join marts.dim_products as p on p.product_id = r.product_id
)
select
    counts.*,
    (select count(*) from (select customer_key from r group by customer_key, top_n having count(*) > top_n)) as customers_over_top_n,
    (select count(*) from (
        select r.customer_key from r inner join marts.dim_products as p using (product_id)
        group by r.customer_key, p.category, r.max_per_category having count(*) > r.max_per_category
    )) as customer_categories_over_cap
from counts
