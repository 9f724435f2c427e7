-- The uplift of every ended campaign (tessera/publish/uplift.py). The two inputs' queries are
-- formatted in as the assignments and orders relations; the window, z and confidence are bound.
with
assignments as ({assignments}),
orders as ({orders}),
ended as (
    select distinct a.campaign, a.assigned_on
    from assignments as a
    where a.assigned_on + interval ($window_days) day <= (select cast(max(ordered_at) as date) from orders)
),
outcomes as (
    select
        a.campaign,
        a.assigned_on,
        a.holdout_group,
        a.customer_key,
        count(o.customer_key) > 0 as converted,
        coalesce(sum(o.revenue), 0) as revenue
    from assignments as a
    inner join ended as e on e.campaign = a.campaign and e.assigned_on = a.assigned_on
    left join orders as o
        on o.customer_key = a.customer_key
        and o.ordered_at >= a.assigned_on
        and o.ordered_at < a.assigned_on + interval ($window_days) day
    group by a.campaign, a.assigned_on, a.holdout_group, a.customer_key
),
per_group as (
    select
        campaign,
        assigned_on,
        holdout_group,
        count(*) as customers,
        avg(case when converted then 1.0 else 0.0 end) as conversion,
        avg(cast(revenue as double)) as revenue_per_customer,
        var_samp(cast(revenue as double)) as revenue_variance
    from outcomes
    group by campaign, assigned_on, holdout_group
),
compared as (
    select
        t.campaign,
        t.assigned_on,
        cast($window_days as integer) as window_days,
        t.customers as treatment_customers,
        c.customers as control_customers,
        t.conversion as treatment_conversion,
        c.conversion as control_conversion,
        t.conversion - c.conversion as conversion_uplift,
        $z * sqrt(t.conversion * (1 - t.conversion) / t.customers
            + c.conversion * (1 - c.conversion) / c.customers) as conversion_half_width,
        t.revenue_per_customer as treatment_revenue_per_customer,
        c.revenue_per_customer as control_revenue_per_customer,
        t.revenue_per_customer - c.revenue_per_customer as revenue_uplift_per_customer,
        $z * sqrt(t.revenue_variance / t.customers + c.revenue_variance / c.customers) as revenue_half_width
    from per_group as t
    inner join per_group as c
        on c.campaign = t.campaign and c.assigned_on = t.assigned_on and c.holdout_group = 'control'
    where t.holdout_group = 'treatment' and t.customers >= 2 and c.customers >= 2
)
select
    campaign,
    assigned_on,
    window_days,
    treatment_customers,
    control_customers,
    treatment_conversion,
    control_conversion,
    conversion_uplift,
    conversion_uplift - conversion_half_width as conversion_uplift_low,
    conversion_uplift + conversion_half_width as conversion_uplift_high,
    treatment_revenue_per_customer,
    control_revenue_per_customer,
    revenue_uplift_per_customer,
    revenue_uplift_per_customer - revenue_half_width as revenue_uplift_low,
    revenue_uplift_per_customer + revenue_half_width as revenue_uplift_high,
    revenue_uplift_per_customer * treatment_customers as incremental_revenue,
    cast($confidence as double) as confidence
from compared
order by campaign, assigned_on
