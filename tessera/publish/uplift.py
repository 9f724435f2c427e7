"""Campaign uplift: what treatment gained over control once a campaign's window has ended.

A campaign is a segment (`rfm:<segment>`, `rule:<segment>`) on the day its audience was published
(`assigned_on`, the as-of date of the published customer_segments). Every member is in
treatment or control by the deterministic holdout (tessera/publish/holdout.py), recorded in
campaigns.assignments when the audience is published. The comparison is intention-to-treat:
a treatment customer who could not be emailed (no consent, no address) still counts as treatment,
so the groups stay the random halves the hash made them.

After `window_days`, per campaign:
- conversion: the share of each group with at least one completed order in
  [assigned_on, assigned_on + window_days); the uplift is the difference, with a normal
  (Wald, unpooled) confidence interval;
- revenue: completed order value per customer in the window, difference of means with a Welch
  (unequal variances, normal quantile) confidence interval; incremental revenue is that
  difference times the treatment group's size.
A campaign is reported only when its window lies entirely inside the data (its end is on or before
the latest order in fct_orders) and both groups have at least two customers.
"""

from __future__ import annotations

from statistics import NormalDist


def z_value(confidence: float) -> float:
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def uplift_sql(assignments: str, orders: str, window_days: int, confidence: float = 0.95) -> str:
    """SQL over `assignments` (campaign, customer_key, holdout_group, assigned_on) and `orders`
    (customer_key, ordered_at, revenue; completed orders only): one row per ended campaign."""
    if int(window_days) < 1:
        raise ValueError(f"window_days must be at least 1, got {window_days}")
    z = z_value(confidence)
    days = int(window_days)
    return f"""
    with
    assignments as ({assignments}),
    orders as ({orders}),
    ended as (
        select distinct a.campaign, a.assigned_on
        from assignments as a
        where a.assigned_on + interval ({days}) day <= (select cast(max(ordered_at) as date) from orders)
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
            and o.ordered_at < a.assigned_on + interval ({days}) day
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
            cast({days} as integer) as window_days,
            t.customers as treatment_customers,
            c.customers as control_customers,
            t.conversion as treatment_conversion,
            c.conversion as control_conversion,
            t.conversion - c.conversion as conversion_uplift,
            {z} * sqrt(t.conversion * (1 - t.conversion) / t.customers
                + c.conversion * (1 - c.conversion) / c.customers) as conversion_half_width,
            t.revenue_per_customer as treatment_revenue_per_customer,
            c.revenue_per_customer as control_revenue_per_customer,
            t.revenue_per_customer - c.revenue_per_customer as revenue_uplift_per_customer,
            {z} * sqrt(t.revenue_variance / t.customers + c.revenue_variance / c.customers) as revenue_half_width
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
        cast({confidence!r} as double) as confidence
    from compared
    order by campaign, assigned_on
    """
