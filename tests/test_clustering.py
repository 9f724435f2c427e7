"""K-Means segments: k by silhouette, stable labels for a fixed seed, readable descriptions."""

from __future__ import annotations

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from ml.clustering import BEHAVIOURAL_FEATURES, cluster_customers


def _customers(seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    groups = []
    # three planted behaviours: frequent app buyers, store shoppers, lapsed one-off buyers
    for n, freq, app, pos, recency in ((300, 12, 0.8, 0.0, 5), (200, 4, 0.0, 0.9, 20), (100, 1, 0.1, 0.1, 200)):
        columns = {c: rng.normal(0, 0.05, n).clip(0) for c in BEHAVIOURAL_FEATURES}
        columns["frequency"] = rng.poisson(freq, n) + 1
        columns["monetary"] = columns["frequency"] * rng.normal(40, 5, n)
        columns["average_order_value"] = columns["monetary"] / columns["frequency"]
        columns["app_order_share"] = np.clip(app + rng.normal(0, 0.05, n), 0, 1)
        columns["pos_order_share"] = np.clip(pos + rng.normal(0, 0.05, n), 0, 1)
        columns["recency_days"] = rng.normal(recency, 3, n).clip(0)
        groups.append(pl.DataFrame(columns))
    out = pl.concat(groups)
    return out.with_columns(customer_key=pl.Series([f"k{i:04d}" for i in range(out.height)]))


def test_kmeans_finds_the_planted_groups_and_names_what_sets_them_apart():
    result = cluster_customers(_customers(), k_range=range(2, 7), seed=42)
    assert result.k == 3
    assert result.sizes == {0: 300, 1: 200, 2: 100}  # renumbered by size
    assert set(result.silhouette_by_k) == {2, 3, 4, 5, 6}
    assert "app" in result.descriptions[0]
    assert "store" in result.descriptions[1]
    assert "longer since the last order" in result.descriptions[2]


def test_kmeans_output_is_stable_for_a_fixed_seed():
    first = cluster_customers(_customers(), seed=7)
    second = cluster_customers(_customers(), seed=7)
    assert_frame_equal(first.labels, second.labels)
    assert first.silhouette_by_k == second.silhouette_by_k


def test_centroids_fitted_on_a_sample_still_assign_every_customer_to_its_group():
    # 200 of the 600 customers place the centroids; all 600 are then assigned to the nearest one
    result = cluster_customers(_customers(), k_range=range(2, 7), seed=42, fit_sample=200)
    assert result.k == 3
    assert len(result.labels) == 600
    assert result.sizes == {0: 300, 1: 200, 2: 100}
    assert "store" in result.descriptions[1]
