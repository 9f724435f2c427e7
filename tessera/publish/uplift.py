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

from tessera.publish import queries


def z_value(confidence: float) -> float:
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def uplift_parameters(window_days: int, confidence: float = 0.95) -> dict:
    """What the uplift query binds: $window_days, $z (the normal quantile) and $confidence."""
    if int(window_days) < 1:
        raise ValueError(f"window_days must be at least 1, got {window_days}")
    return {"window_days": int(window_days), "z": z_value(confidence), "confidence": float(confidence)}


def uplift_sql(assignments: str, orders: str) -> str:
    """The query over `assignments` (campaign, customer_key, holdout_group, assigned_on) and
    `orders` (customer_key, ordered_at, revenue; completed orders only), both queries: one row per
    ended campaign, its parameters bound from uplift_parameters."""
    return queries.load("uplift").format(assignments=assignments, orders=orders)


def uplift_query(assignments: str, orders: str, window_days: int, confidence: float = 0.95) -> tuple[str, dict]:
    """The query and its parameters, for con.execute(*uplift_query(...))."""
    return uplift_sql(assignments, orders), uplift_parameters(window_days, confidence)
