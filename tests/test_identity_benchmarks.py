"""The pairwise metric of bench/identity_benchmarks.py on small clusterings whose figures are known
by hand, and its deterministic rule baseline. Splink is not run here."""

from __future__ import annotations

import polars as pl
import pytest

from bench.identity_benchmarks import pairwise_metrics, rule_clusters


def _truth(entities: dict[str, str]) -> pl.DataFrame:
    return pl.DataFrame({"record_id": list(entities), "entity": list(entities.values())})


def _predicted(clusters: dict[str, str]) -> pl.DataFrame:
    return pl.DataFrame({"record_id": list(clusters), "cluster_id": list(clusters.values())})


# truth: {a, b, c} and {d, e}: 3 + 1 = 4 true pairs
TRUTH = _truth({"a": "1", "b": "1", "c": "1", "d": "2", "e": "2"})


@pytest.mark.parametrize(
    ("clusters", "expected"),
    [
        # the truth itself
        (
            {"a": "x", "b": "x", "c": "x", "d": "y", "e": "y"},
            {"predicted_pairs": 4, "true_positive_pairs": 4, "precision": 1.0, "recall": 1.0, "f1": 1.0},
        ),
        # {a, b} {c} {d, e}: pairs ab, de, both true; misses ac, bc
        (
            {"a": "x", "b": "x", "c": "z", "d": "y", "e": "y"},
            {"predicted_pairs": 2, "true_positive_pairs": 2, "precision": 1.0, "recall": 0.5, "f1": 2 / 3},
        ),
        # everything in one cluster: 10 pairs, the 4 true ones among them
        (
            {"a": "x", "b": "x", "c": "x", "d": "x", "e": "x"},
            {"predicted_pairs": 10, "true_positive_pairs": 4, "precision": 0.4, "recall": 1.0, "f1": 8 / 14},
        ),
        # {a, d} {b, e} {c}: two predicted pairs, both false
        (
            {"a": "x", "d": "x", "b": "y", "e": "y", "c": "z"},
            {"predicted_pairs": 2, "true_positive_pairs": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0},
        ),
        # all singletons: precision has no denominator
        (
            {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"},
            {"predicted_pairs": 0, "true_positive_pairs": 0, "precision": None, "recall": 0.0, "f1": 0.0},
        ),
    ],
)
def test_pairwise_metrics_match_the_figures_counted_by_hand(clusters, expected):
    got = pairwise_metrics(TRUTH, _predicted(clusters))
    assert got["true_pairs"] == 4 and got["records"] == 5 and got["true_clusters"] == 2
    assert got["predicted_clusters"] == len(set(clusters.values()))
    for key, value in expected.items():
        assert got[key] == (value if value is None else pytest.approx(value)), key


def test_pairwise_metrics_count_pairs_from_cluster_sizes_at_scale():
    # 3,000 entities of 4 records; each predicted cluster takes 2 records of one entity: every
    # predicted pair is true (3,000 x 2 pairs) and a third of the 6 pairs per entity is found
    n = 12_000
    truth = pl.DataFrame({"record_id": [str(i) for i in range(n)], "entity": [i // 4 for i in range(n)]})
    predicted = pl.DataFrame({"record_id": [str(i) for i in range(n)], "cluster_id": [i // 2 for i in range(n)]})
    got = pairwise_metrics(truth, predicted)
    assert (got["true_pairs"], got["predicted_pairs"], got["true_positive_pairs"]) == (18_000, 6_000, 6_000)
    assert got["precision"] == 1.0 and got["recall"] == pytest.approx(1 / 3) and got["f1"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("predicted", "message"),
    [
        (_predicted({"a": "x", "b": "x", "c": "x", "d": "y"}), "miss 1 records"),
        (_predicted({"a": "x", "b": "x", "c": "x", "d": "y", "e": "y", "f": "y"}), "1 unknown"),
        (_predicted({"a": "x", "b": "x", "c": "x", "d": "y", "e": "y"}).vstack(_predicted({"e": "z"})), "unique"),
    ],
)
def test_pairwise_metrics_refuse_clusterings_of_other_records(predicted, message):
    with pytest.raises(ValueError, match=message):
        pairwise_metrics(TRUTH, predicted)


def test_rule_links_records_equal_on_any_rule_after_normalising_and_chains_them():
    records = pl.DataFrame(
        {
            "id": ["r1", "r2", "r3", "r4", "r5"],
            "name": [" Ann  Lee", "ann lee", "ANN LEE", None, "bob"],
            "dob": ["1990-01-01", "1990-01-01", "1991-01-01", "1990-01-01", "1990-01-01"],
            "email": [None, None, "x@y.org", "x@y.org", None],
        }
    )
    clusters = rule_clusters(records, "id", [["name", "dob"], ["email"]])
    got = dict(zip(clusters["record_id"], clusters["cluster_id"], strict=True))
    # r1 = r2 on name + dob; r3 = r4 on email; r3's dob differs and r4 has no name: two clusters
    assert got == {"r1": "r1", "r2": "r1", "r3": "r3", "r4": "r3", "r5": "r5"}
