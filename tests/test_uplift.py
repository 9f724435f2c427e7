"""Campaign uplift (tessera/publish/uplift.py): estimates and intervals on a seeded simulation with a known effect."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from tessera.publish.uplift import uplift_query, z_value

ASSIGNMENTS = "select campaign, customer_key, holdout_group, assigned_on from a"
ORDERS = "select customer_key, ordered_at, revenue from o"


def simulate(con, n=20_000, control_share=0.1, p_treatment=0.30, p_control=0.20, seed=3):
    """One campaign assigned on 2026-09-01; treatment converts at p_treatment, control at p_control
    within 14 days; a second campaign assigned too late for its window to have ended."""
    rng = np.random.default_rng(seed)
    control = rng.random(n) < control_share
    converted = rng.random(n) < np.where(control, p_control, p_treatment)
    revenue = np.where(converted, rng.gamma(2.0, 25.0, n), 0.0)
    day = rng.integers(0, 14, n)
    keys = np.array([f"c{i}" for i in range(n)])
    assignments = pd.concat(
        [
            pd.DataFrame(
                {
                    "campaign": "rfm:Champions",
                    "customer_key": keys,
                    "holdout_group": np.where(control, "control", "treatment"),
                    "assigned_on": pd.Timestamp("2026-09-01"),
                }
            ),
            pd.DataFrame(
                {
                    "campaign": "rfm:Lost",
                    "customer_key": keys[:100],
                    "holdout_group": np.where(np.arange(100) % 2, "treatment", "control"),
                    "assigned_on": pd.Timestamp("2026-10-25"),
                }
            ),
        ]
    )
    orders = pd.DataFrame(
        {
            "customer_key": keys[converted],
            "ordered_at": pd.Timestamp("2026-09-01 12:00") + pd.to_timedelta(day[converted], "D"),
            "revenue": revenue[converted],
        }
    )
    # orders outside the window do not count: the day before and the day the window closes
    extra = pd.DataFrame(
        {
            "customer_key": [keys[0], keys[1], "c9"],
            "ordered_at": pd.to_datetime(
                ["2026-08-31 23:59", "2026-09-15 00:00", "2026-10-31 12:00"]
            ),  # last: the data's last day
            "revenue": [1000.0, 1000.0, 5.0],
        }
    )
    orders = pd.concat([orders, extra])
    con.register("assignments_frame", assignments)
    con.register("orders_frame", orders)
    con.execute(
        "create table a as select campaign, customer_key, holdout_group, cast(assigned_on as date) as assigned_on "
        "from assignments_frame"
    )
    con.execute("create table o as select * from orders_frame")
    return control, converted, revenue


def test_uplift_recovers_a_known_effect_with_an_interval_that_covers_it():
    con = duckdb.connect()
    control, converted, revenue = simulate(con)
    result = con.execute(*uplift_query(ASSIGNMENTS, ORDERS, 14)).df()
    # only the campaign whose 14 days ended before the data's last day
    assert list(result["campaign"]) == ["rfm:Champions"]
    r = result.iloc[0]
    assert (r.treatment_customers, r.control_customers) == ((~control).sum(), control.sum())
    # the same figures computed directly, in numpy
    assert r.treatment_conversion == pytest.approx(converted[~control].mean())
    assert r.control_conversion == pytest.approx(converted[control].mean())
    assert r.revenue_uplift_per_customer == pytest.approx(revenue[~control].mean() - revenue[control].mean())
    half = z_value(0.95) * np.sqrt(
        revenue[~control].var(ddof=1) / (~control).sum() + revenue[control].var(ddof=1) / control.sum()
    )
    assert r.revenue_uplift_high - r.revenue_uplift_per_customer == pytest.approx(half)
    # the true effect (0.10) is inside the interval, and no effect (0) is not
    assert r.conversion_uplift_low < 0.10 < r.conversion_uplift_high
    assert r.conversion_uplift_low > 0
    assert r.incremental_revenue == pytest.approx(r.revenue_uplift_per_customer * r.treatment_customers)


def test_without_an_effect_the_interval_covers_zero_in_most_seeded_campaigns():
    covered = 0
    for seed in range(20):
        con = duckdb.connect()
        simulate(con, n=4000, p_treatment=0.2, p_control=0.2, seed=seed)
        r = con.execute(*uplift_query(ASSIGNMENTS, ORDERS, 14)).df().iloc[0]
        covered += r.conversion_uplift_low <= 0 <= r.conversion_uplift_high
    assert covered >= 17  # 95 % intervals: about 19 of 20


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="window_days"):
        uplift_query(ASSIGNMENTS, ORDERS, 0)
    with pytest.raises(ValueError, match="confidence"):
        uplift_query(ASSIGNMENTS, ORDERS, 14, confidence=1.2)
