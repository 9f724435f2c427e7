"""Thin data degrades gracefully: the ML assets skip their model with a reason (asset metadata and
the run summary) and still write their table, so everything downstream publishes (issue 32: a shop
with no orders, or one label class, failed inside ML code and published nothing)."""

from __future__ import annotations

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from ml.clustering import BEHAVIOURAL_FEATURES
from ml.propensity import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from ml.rec_lists import USER_FEATURES
from orchestration.ml import (
    CLUSTERS_KEY,
    PROPENSITY_KEY,
    RECOMMENDER_KEY,
    customer_clusters,
    propensity_scores,
    recommendation_candidates,
)
from orchestration.resources import TesseraResource
from orchestration.run import skipped_models
from tessera.settings import load_settings
from tests.conftest import use_data_dir

CUSTOMERS = [f"c{n:02d}" for n in range(30)]
SNAPSHOTS = pd.to_datetime(["2026-09-01", "2026-10-01", "2026-10-31"])
PRODUCTS = pd.DataFrame(
    {
        "product_id": [f"p{n}" for n in range(6)],
        "category": ["toys", "toys", "toys", "toys", "books", "books"],
        "brand": "acme",
        "price_band": "low",
        "is_active": [True, True, True, True, True, False],
    }
)


def write_marts(path, purchased_label: int, with_orders: bool) -> None:
    """The marts the three ML assets read, for 30 customers: feature snapshots labelled with one
    class only, and a clickstream of views (plus, with_orders, purchases for every customer)."""
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema marts")
        customers = pd.DataFrame(
            {"customer_key": CUSTOMERS, "is_erasure_requested": False, "personalization_consent": True}
        )
        snapshots = pd.concat(
            [
                pd.DataFrame(
                    {"customer_key": CUSTOMERS, "as_of_date": day, "last_input_at": day - pd.Timedelta(days=1)}
                )
                for day in SNAPSHOTS
            ],
            ignore_index=True,
        )
        for column in NUMERIC_FEATURES:
            snapshots[column] = np.arange(len(snapshots), dtype=float) % 7
        snapshots["frequency"] = 1.0 if with_orders else 0.0
        for column in CATEGORICAL_FEATURES:
            snapshots[column] = np.where(np.arange(len(snapshots)) % 2, "x", "y")
        labels = snapshots.loc[snapshots["as_of_date"] < SNAPSHOTS[-1], ["customer_key", "as_of_date"]].assign(
            purchased_next_30d=purchased_label, churned_next_30d=1 - purchased_label
        )
        features = pd.DataFrame({"customer_key": CUSTOMERS})
        for column in BEHAVIOURAL_FEATURES:
            features[column] = 0.0
        features["frequency"] = 1.0 if with_orders else 0.0
        rows = [
            (c, f"p{n % 4}", "view", pd.Timestamp("2026-10-01") + pd.Timedelta(days=n % 30))
            for n, c in enumerate(CUSTOMERS)
        ]
        interactions = pd.DataFrame(rows, columns=["customer_key", "product_id", "interaction_type", "occurred_at"])
        rec_features = pd.DataFrame({"customer_key": CUSTOMERS, "as_of_date": SNAPSHOTS[-1]})
        for column in USER_FEATURES:
            rec_features[column] = "unknown"
        for name, frame in (
            ("dim_customers", customers),
            ("customer_feature_snapshots", snapshots),
            ("customer_propensity_labels", labels),
            ("customer_features", features),
            ("dim_products", PRODUCTS),
            ("fct_customer_product_interactions", interactions),
            ("customer_rec_user_features", rec_features),
        ):
            con.register("frame", frame)
            con.execute(f"create table marts.{name} as select * from frame")
            con.unregister("frame")
    finally:
        con.close()


@pytest.fixture
def thin_shop(tmp_path, monkeypatch):
    use_data_dir(monkeypatch, tmp_path / "data")
    settings = load_settings()
    settings.ensure_dirs()
    return settings


def materialize_ml() -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [recommendation_candidates, propensity_scores, customer_clusters],
        resources={"tessera": TesseraResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )


def metadata_of(result, key: dg.AssetKey) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: getattr(v, "value", v) for k, v in event.step_materialization_data.materialization.metadata.items()}


@pytest.mark.graph
def test_a_shop_with_no_orders_yet_skips_every_model_and_still_writes_each_table(thin_shop):
    write_marts(thin_shop.duckdb_path, purchased_label=0, with_orders=False)
    result = materialize_ml()
    assert result.success
    reasons = dict(skipped_models(result))
    assert reasons == {
        "ml/recommendation_candidates": (
            "a 21-day holdout from 2026-10-10 leaves 9 training interactions and 0 purchases to test on: "
            "a model cannot be evaluated"
        ),
        "ml/propensity_scores": (
            "purchased_next_30d: fewer than 10 labelled customers of a class to train on (training snapshot: "
            "0 positive, 30 negative; evaluation snapshot: 0 positive, 30 negative); churned_next_30d: fewer than "
            "10 labelled customers of a class to train on (training snapshot: 30 positive, 0 negative; "
            "evaluation snapshot: 30 positive, 0 negative)"
        ),
        "ml/customer_clusters": "0 customers with an order: at least 3 are needed for 2 clusters",
    }
    assert metadata_of(result, RECOMMENDER_KEY)["lists_from"] == "baseline:most_popular"
    con = duckdb.connect(str(thin_shop.duckdb_path), read_only=True)
    try:
        # the most viewed active products, at most 3 a category, the same list for everyone
        lists = con.execute(
            "select customer_key, list(product_id order by rank), any_value(source), any_value(model_version), "
            "count(model_run_id) from ml.recommendation_candidates group by 1 order by 1"
        ).fetchall()
        assert len(lists) == 30
        assert {(tuple(r[1]), *r[2:]) for r in lists} == {
            (("p0", "p1", "p2", "p4"), "popularity", "baseline:most_popular", 0)
        }
        scores = con.execute(
            "select count(*), count(purchase_propensity_30d), count(churn_risk_30d), "
            "count(purchase_propensity_30d_run_id), min(as_of_date) from ml.propensity_scores"
        ).fetchall()
        assert scores == [(30, 0, 0, 0, SNAPSHOTS[-1].to_pydatetime())]
        clusters = con.execute(
            "select cluster_id, cluster_description, count(*), count(clustering_run_id) from ml.customer_clusters group by all"
        ).fetchall()
        assert clusters == [(-1, "no order yet: not clustered", 30, 0)]
    finally:
        con.close()


@pytest.mark.graph
def test_propensity_with_one_label_class_skips_with_the_counts_and_the_clusters_name_their_shortfall(thin_shop):
    # every customer bought in the next 30 days: purchase has one class, churn the other one
    write_marts(thin_shop.duckdb_path, purchased_label=1, with_orders=True)
    result = materialize_ml()
    assert result.success
    meta = metadata_of(result, PROPENSITY_KEY)
    assert meta["purchased_next_30d/skipped_reason"] == (
        "purchased_next_30d: fewer than 10 labelled customers of a class to train on "
        "(training snapshot: 30 positive, 0 negative; evaluation snapshot: 30 positive, 0 negative)"
    )
    assert meta["churned_next_30d/skipped_reason"].startswith("churned_next_30d: fewer than 10 labelled customers")
    # 30 buyers with identical behaviour cannot make two clusters
    assert metadata_of(result, CLUSTERS_KEY)["skipped_reason"] == (
        "30 customers with an order but 1 distinct behaviours: at least 3 are needed for 2 clusters"
    )
    con = duckdb.connect(str(thin_shop.duckdb_path), read_only=True)
    try:
        assert con.execute("select distinct cluster_id, cluster_description from ml.customer_clusters").fetchall() == [
            (
                -1,
                "not clustered: 30 customers with an order but 1 distinct behaviours: at least 3 are needed for 2 clusters",
            )
        ]
    finally:
        con.close()
