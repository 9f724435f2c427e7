"""Propensity models and the publish gates on scores and segments."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest

from ml.propensity import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    LeakageError,
    check_point_in_time,
    train_propensity,
)
from tessera.publish.outputs import run_validations
from tessera.publish.published import PUBLISHED
from tests.conftest import with_pkeys


def _snapshot(as_of: str, n: int, rng: np.random.Generator) -> pl.DataFrame:
    columns = {c: rng.random(n) * 10 for c in NUMERIC_FEATURES}
    for c in CATEGORICAL_FEATURES:
        columns[c] = rng.choice(["a", "b"], n)
    columns["customer_key"] = [f"c{i}" for i in range(n)]
    cutoff = date.fromisoformat(as_of)
    # purchase is likelier the more recent the last order and the more sessions
    logit = 1.5 - 0.4 * columns["recency_days"] + 0.3 * columns["sessions"]
    columns["purchased_next_30d"] = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pl.DataFrame(columns).with_columns(
        as_of_date=pl.lit(cutoff),
        last_input_at=pl.lit(datetime.combine(cutoff, datetime.min.time()) - timedelta(days=1)),
    )


def test_a_feature_computed_after_the_cutoff_fails():
    rng = np.random.default_rng(0)
    frame = _snapshot("2026-10-01", 50, rng)
    check_point_in_time(frame)  # clean snapshot passes
    frame[3, "last_input_at"] = datetime(2026, 10, 1, 0, 0, 0)  # an event at the cutoff itself
    with pytest.raises(LeakageError, match="c3"):
        check_point_in_time(frame)
    with pytest.raises(LeakageError):
        train_propensity(
            frame, _snapshot("2026-11-01", 50, rng), _snapshot("2026-12-01", 50, rng), "purchased_next_30d"
        )


def test_propensity_learns_a_planted_signal_and_reports_the_baseline():
    rng = np.random.default_rng(1)
    # 3,000 rows: with 25 noise features beside the two planted ones, 1,500 left the model within
    # noise of the recency-only baseline on some draws
    train, evaluation, current = (_snapshot(d, 3000, rng) for d in ("2026-09-01", "2026-10-01", "2026-11-01"))
    result = train_propensity(train, evaluation, current.drop("purchased_next_30d"), "purchased_next_30d")
    assert result.metrics["auc"] > 0.75
    assert 0.5 < result.metrics["baseline_recency_auc"] < result.metrics["auc"]
    assert set(result.metrics) >= {"pr_auc", "brier", "expected_calibration_error"}
    assert result.scores["score"].is_between(0, 1).all() and len(result.scores) == 3000
    # same seed, same data: same scores
    again = train_propensity(train, evaluation, current.drop("purchased_next_30d"), "purchased_next_30d")
    assert np.array_equal(result.scores["score"].to_numpy(), again.scores["score"].to_numpy())


def test_fits_capped_to_a_sample_still_evaluate_and_score_every_customer():
    rng = np.random.default_rng(3)
    train, evaluation, current = (_snapshot(d, 1500, rng) for d in ("2026-09-01", "2026-10-01", "2026-11-01"))
    result = train_propensity(
        train, evaluation, current.drop("purchased_next_30d"), "purchased_next_30d", max_train_rows=500
    )
    assert result.metrics["train_rows"] == 500
    assert result.metrics["eval_rows"] == 1500  # metrics on every labelled customer
    assert len(result.scores) == 1500 and result.scores["score"].is_not_null().all()
    assert result.metrics["auc"] > 0.75  # the planted signal survives the sample


def _segments_spec():
    return next(p for p in PUBLISHED if p.name == "customer_segments")


def test_segment_collapse_against_the_published_version_fails_the_gate():
    con = with_pkeys(duckdb.connect())
    con.execute("create schema marts; create schema publish")
    con.execute(
        "create table marts.dim_customers as select 'k' || i as customer_key, false as is_erasure_requested from range(100) t(i)"
    )
    con.execute(
        "create table publish.customer_segments as "
        "select customer_pkey('k' || i) as customer_pkey, 'Champions' as rfm_segment from range(100) t(i)"
    )
    healthy = "create or replace table publish.customer_segments__next as select * from publish.customer_segments"
    con.execute(healthy)
    assert {v.name: n for v, n in run_validations(con, _segments_spec(), "publish.customer_segments__next")} == {
        "every_active_customer_present": 0,
        "segment_sizes_do_not_collapse": 0,
    }
    con.execute(
        "create or replace table publish.customer_segments__next as "
        "select customer_pkey('k' || i) as customer_pkey, case when i < 20 then 'Champions' else 'Lost' end as rfm_segment "
        "from range(100) t(i)"
    )
    results = {v.name: n for v, n in run_validations(con, _segments_spec(), "publish.customer_segments__next")}
    assert results["segment_sizes_do_not_collapse"] == 1


def test_a_missing_customer_fails_the_gate():
    con = with_pkeys(duckdb.connect())
    con.execute("create schema marts; create schema publish")
    con.execute(
        "create table marts.dim_customers as select 'k' || i as customer_key, false as is_erasure_requested from range(10) t(i)"
    )
    con.execute(
        "create table publish.customer_segments__next as "
        "select customer_pkey('k' || i) as customer_pkey, 'Lost' as rfm_segment from range(9) t(i)"
    )
    results = {v.name: n for v, n in run_validations(con, _segments_spec(), "publish.customer_segments__next")}
    assert results["every_active_customer_present"] == 1
    assert results["segment_sizes_do_not_collapse"] == 0  # first publish: nothing to compare with


def test_training_survives_a_shop_without_clickstream():
    # Regression: on Online Retail (no events) days_since_last_visit is all missing and device and
    # top category are constant; scikit-learn's binning failed on them.
    rng = np.random.default_rng(2)
    frames = [
        _snapshot(d, 400, rng).with_columns(
            days_since_last_visit=pl.lit(np.nan), last_device=pl.lit("unknown"), top_category=pl.lit("none")
        )
        for d in ("2026-09-01", "2026-10-01", "2026-11-01")
    ]
    result = train_propensity(*frames[:2], frames[2].drop("purchased_next_30d"), "purchased_next_30d")
    assert result.metrics["auc"] > 0.7


def test_segment_history_records_who_entered_and_left_and_when():
    from tessera.publish.published import SEGMENT_HISTORY

    con = duckdb.connect()
    con.execute("create schema publish")

    def publish(rows, as_of):
        con.execute(
            "create or replace table publish.customer_segments as select * from (values "
            + ", ".join(f"('{k}', '{s}', null::integer, null::varchar, null::varchar, date '{as_of}')" for k, s in rows)
            + ") t(customer_pkey, rfm_segment, cluster_id, cluster_description, rule_segment, as_of_date)"
        )
        for sql in SEGMENT_HISTORY:
            con.execute(sql)

    publish([("a", "Champions"), ("b", "Lost")], "2026-10-01")
    publish([("a", "Champions"), ("b", "Lost")], "2026-10-01")  # re-publish: nothing changes
    publish([("a", "At Risk"), ("b", "Lost")], "2026-11-01")
    rows = con.execute(
        "select customer_pkey, segment, valid_from, valid_to from publish.customer_segment_history order by all"
    ).fetchall()
    import datetime as dt

    assert rows == [
        ("a", "At Risk", dt.date(2026, 11, 1), None),
        ("a", "Champions", dt.date(2026, 10, 1), dt.date(2026, 11, 1)),
        ("b", "Lost", dt.date(2026, 10, 1), None),
    ]
