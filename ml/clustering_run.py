"""One tracked run of the behavioural clusters: customers with an order clustered with K-Means
(ml/clustering.py), k chosen by silhouette, logged to MLflow; the others get cluster -1."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ml.clustering import BEHAVIOURAL_FEATURES, ClusteringResult, cluster_customers, clustering_shortfall
from ml.plots import grouped_bar_png
from ml.tracking import SEGMENTS, Tracking, frame_dataset, log_clustering_run, training_run

NO_ORDER_CLUSTER = (-1, "no order yet: not clustered")


@dataclass
class ClusteringRun:
    clusters: pl.DataFrame  # ml.customer_clusters: customer_key, cluster_id, cluster_description, clustering_run_id
    skipped_reason: str | None = None
    result: ClusteringResult | None = None
    run_id: str | None = None
    plot: bytes | None = None  # silhouette per k


def cluster_and_log(
    features: pl.DataFrame, k_min: int, k_max: int, fit_sample: int, seed: int, tracking: Tracking, log
) -> ClusteringRun:
    """`features`: customer_key and BEHAVIOURAL_FEATURES of every customer, in key order. Thin
    data: every customer keeps cluster -1 with the reason in words, and no run; `log` has warning."""
    buyers = features.filter(pl.col("frequency") > 0)
    others = _unclustered(features.filter(pl.col("frequency") <= 0), NO_ORDER_CLUSTER[1])
    if (reason := clustering_shortfall(buyers, k_min)) is not None:
        log.warning(f"clustering skipped: {reason}")
        out = pl.concat([_unclustered(buyers, f"not clustered: {reason}"), others])
        return ClusteringRun(out.with_columns(clustering_run_id=pl.lit(None, pl.String)), skipped_reason=reason)
    # the MLflow run starts before the fits: its duration is the clustering's
    with training_run(tracking, "kmeans", SEGMENTS) as run_id:
        result = cluster_customers(buyers, k_range=range(k_min, k_max + 1), seed=seed, fit_sample=fit_sample)
        _log(run_id, result, buyers, k_min, k_max, fit_sample, seed, tracking)
    out = pl.concat([result.labels, others]).with_columns(clustering_run_id=pl.lit(run_id))
    plot = grouped_bar_png(
        {f"k={k}": {"silhouette": v} for k, v in result.silhouette_by_k.items()},
        f"Silhouette per number of clusters (chosen k={result.k})",
        "silhouette",
    )
    return ClusteringRun(out, result=result, run_id=run_id, plot=plot)


def _log(run_id: str, result: ClusteringResult, buyers: pl.DataFrame, k_min, k_max, fit_sample, seed, tracking) -> None:
    """The clustering's params, metrics and artifacts in its run, the buyers' features its dataset."""
    log_clustering_run(
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
            "customers_clustered": buyers.height,
            "fit_sample": min(fit_sample, buyers.height),
        },
        silhouette_by_k=result.silhouette_by_k,
        sizes=result.sizes,
        # ml.tracking logs pandas records
        profiles=result.profiles.to_pandas(),
        z_profiles=result.z_profiles.to_pandas(),
        descriptions=result.descriptions,
        tags=tracking.tags,
        run_id=run_id,
        dataset=frame_dataset(buyers, "behavioural_features", tracking.data_source),
    )


def _unclustered(customers: pl.DataFrame, description: str) -> pl.DataFrame:
    """These customers in cluster -1, with why."""
    return customers.select(
        "customer_key", cluster_id=pl.lit(NO_ORDER_CLUSTER[0], pl.Int64), cluster_description=pl.lit(description)
    )
