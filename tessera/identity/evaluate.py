"""Pairwise and cluster-level quality of a clustering against a ground truth."""

from __future__ import annotations

import pandas as pd


def _pairs(sizes: pd.Series) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def evaluate_clusters(predicted: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """predicted: record_id, cluster_id; truth: record_id, person_id. Records missing from either are ignored."""
    joined = predicted.merge(truth, on="record_id", how="inner")
    true_positive = _pairs(joined.groupby(["cluster_id", "person_id"]).size())
    predicted_pairs = _pairs(joined.groupby("cluster_id").size())
    true_pairs = _pairs(joined.groupby("person_id").size())
    precision = true_positive / predicted_pairs if predicted_pairs else 1.0
    recall = true_positive / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    people_per_cluster = joined.groupby("cluster_id")["person_id"].nunique()
    clusters_per_person = joined.groupby("person_id")["cluster_id"].nunique()
    cluster_sets = joined.groupby("cluster_id")["record_id"].agg(frozenset)
    person_sets = set(joined.groupby("person_id")["record_id"].agg(frozenset))
    return {
        "records": len(joined),
        "pairwise_precision": precision,
        "pairwise_recall": recall,
        "pairwise_f1": f1,
        "true_pairs": true_pairs,
        "predicted_pairs": predicted_pairs,
        "true_positive_pairs": true_positive,
        "clusters": int(joined["cluster_id"].nunique()),
        "people": int(joined["person_id"].nunique()),
        "exact_cluster_share": float(cluster_sets.isin(person_sets).mean()) if len(cluster_sets) else 1.0,
        "over_merged_clusters": int((people_per_cluster > 1).sum()),
        "split_people": int((clusters_per_person > 1).sum()),
    }
