"""One tracked run of the behavioural clusters: customers with an order clustered with K-Means
(ml/clustering.py), k chosen by silhouette, logged to MLflow; the others get cluster -1."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ml.clustering import BEHAVIOURAL_FEATURES, ClusteringResult, cluster_customers, clustering_shortfall
from ml.plots import grouped_bar_png
from ml.tracking import Tracking, log_clustering_run

NO_ORDER_CLUSTER = (-1, "no order yet: not clustered")


@dataclass
class ClusteringRun:
    clusters: pd.DataFrame  # ml.customer_clusters: customer_key, cluster_id, cluster_description, clustering_run_id
    skipped_reason: str | None = None
    result: ClusteringResult | None = None
    run_id: str | None = None
    plot: bytes | None = None  # silhouette per k


def cluster_and_log(
    features: pd.DataFrame, k_min: int, k_max: int, fit_sample: int, seed: int, tracking: Tracking, log
) -> ClusteringRun:
    """`features`: customer_key and BEHAVIOURAL_FEATURES of every customer, in key order. Thin
    data: every customer keeps cluster -1 with the reason in words, and no run; `log` has warning."""
    buyers = features[features["frequency"] > 0].reset_index(drop=True)
    others = features.loc[features["frequency"] <= 0, ["customer_key"]].assign(
        cluster_id=NO_ORDER_CLUSTER[0], cluster_description=NO_ORDER_CLUSTER[1]
    )
    if (reason := clustering_shortfall(buyers, k_min)) is not None:
        log.warning(f"clustering skipped: {reason}")
        unclustered = buyers[["customer_key"]].assign(
            cluster_id=NO_ORDER_CLUSTER[0], cluster_description=f"not clustered: {reason}"
        )
        out = pd.concat([unclustered, others], ignore_index=True)
        out["clustering_run_id"] = pd.Series(pd.NA, index=out.index, dtype="string")
        return ClusteringRun(out, skipped_reason=reason)
    result = cluster_customers(buyers, k_range=range(k_min, k_max + 1), seed=seed, fit_sample=fit_sample)
    run_id = log_clustering_run(
        tracking_uri=tracking.tracking_uri,
        experiment=tracking.experiment,
        artifact_root=tracking.artifact_root,
        params={
            "algorithm": "KMeans",
            "k_min": k_min,
            "k_max": k_max,
            "chosen_k": result.k,
            "seed": seed,
            "features": ",".join(BEHAVIOURAL_FEATURES),
            "customers_clustered": len(buyers),
            "fit_sample": min(fit_sample, len(buyers)),
        },
        silhouette_by_k=result.silhouette_by_k,
        sizes=result.sizes,
        profiles=result.profiles,
        z_profiles=result.z_profiles,
        descriptions=result.descriptions,
        tags=tracking.tags,
    )
    out = pd.concat([result.labels, others], ignore_index=True).assign(clustering_run_id=run_id)
    plot = grouped_bar_png(
        {f"k={k}": {"silhouette": v} for k, v in result.silhouette_by_k.items()},
        f"Silhouette per number of clusters (chosen k={result.k})",
        "silhouette",
    )
    return ClusteringRun(out, result=result, run_id=run_id, plot=plot)
