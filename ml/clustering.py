"""Behavioural customer clusters: K-Means on standardised features, k chosen by silhouette.

Heavy-tailed counts and amounts are log1p-transformed, then everything is standardised. Each k in
the range is fitted with a fixed seed; the k with the best silhouette (on a seeded sample above
`silhouette_sample` rows) wins. Above `fit_sample` customers the centroids are fitted on a seeded
sample and every customer is then assigned to its nearest centroid: a sample of 50,000 places
centroids as well as a million rows do, and the silhouette is O(n^2), so it is always sampled.
Clusters are renumbered by size (0 = largest), so the same input and seed always give the same
labels, and each gets a description built from its profile: the features whose cluster mean is
furthest from the overall mean, in standard deviations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

BEHAVIOURAL_FEATURES = {
    # column: (log-transform, phrase when above average, phrase when below average)
    "recency_days": (False, "longer since the last order", "ordered more recently"),
    "frequency": (True, "more orders", "fewer orders"),
    "monetary": (True, "higher spend", "lower spend"),
    "average_order_value": (True, "bigger baskets", "smaller baskets"),
    "sessions": (True, "more web sessions", "fewer web sessions"),
    "product_views": (True, "more product views", "fewer product views"),
    "cart_adds": (True, "more cart adds", "fewer cart adds"),
    "email_open_rate": (False, "opens more emails", "opens fewer emails"),
    "email_click_rate": (False, "clicks more emails", "clicks fewer emails"),
    "app_order_share": (False, "buys more in the app", "buys less in the app"),
    "pos_order_share": (False, "buys more in store", "buys less in store"),
    "mobile_event_share": (False, "browses more on mobile", "browses less on mobile"),
}
# A customer who never ordered is treated as "long ago" rather than missing.
NEVER = 365
# the numbers of clusters tried, K_MIN..K_MAX; centroids are fitted on at most FIT_SAMPLE
# customers, then all are assigned
K_MIN, K_MAX = 2, 8
FIT_SAMPLE = 50_000


@dataclass
class ClusteringResult:
    labels: pl.DataFrame  # customer_key, cluster_id, cluster_description
    k: int
    silhouette_by_k: dict[int, float]
    sizes: dict[int, int]
    profiles: pl.DataFrame  # cluster_id, feature means (original units), size
    z_profiles: pl.DataFrame  # cluster_id, per feature, standard deviations from the overall mean
    descriptions: dict[int, str]


def prepare(features: pl.DataFrame) -> np.ndarray:
    """The behavioural features as a customers x features float matrix. Column-major, the layout
    the scaler has always summed over: another layout sums in another order, with other last bits."""
    x = np.empty((features.height, len(BEHAVIOURAL_FEATURES)), order="F")
    for j, (col, (log, _, _)) in enumerate(BEHAVIOURAL_FEATURES.items()):
        missing = NEVER if col == "recency_days" else 0.0
        values = features[col].cast(pl.Float64).fill_nan(None).fill_null(missing).to_numpy()
        x[:, j] = np.log1p(np.where(values >= 0, values, 0.0)) if log else values
    return x


def describe(z_row: dict[str, float], top: int = 3) -> str:
    strongest = sorted(z_row, key=lambda col: abs(z_row[col]), reverse=True)[:top]
    parts = []
    for col in strongest:
        z = z_row[col]
        _, above, below = BEHAVIOURAL_FEATURES[col]
        parts.append(f"{above if z > 0 else below} ({z:+.1f} sd)")
    return "; ".join(parts)


def clustering_shortfall(features: pl.DataFrame, k_min: int) -> str | None:
    """Why these customers cannot be clustered into at least `k_min` clusters (too few customers,
    or too few distinct behaviours), or None when they can. The clusters asset skips with this
    reason instead of failing (thin data)."""
    if features.height <= k_min:
        return f"{features.height} customers with an order: at least {k_min + 1} are needed for {k_min} clusters"
    distinct = len(np.unique(prepare(features), axis=0))
    if distinct <= k_min:
        return (
            f"{features.height} customers with an order but {distinct} distinct behaviours: "
            f"at least {k_min + 1} are needed for {k_min} clusters"
        )
    return None


def cluster_customers(
    features: pl.DataFrame,
    k_range: range = range(K_MIN, K_MAX + 1),
    seed: int = 42,
    silhouette_sample: int = 5_000,
    n_init: int = 5,
    fit_sample: int = FIT_SAMPLE,
) -> ClusteringResult:
    scaled = StandardScaler().fit_transform(prepare(features))
    if len(scaled) > fit_sample:
        rows = np.sort(np.random.default_rng(seed).choice(len(scaled), size=fit_sample, replace=False))
        fit_on = scaled[rows]
    else:
        fit_on = scaled
    scores, fits = {}, {}
    # k must leave two customers in a cluster somewhere: fewer distinct rows than k + 1 cannot
    distinct = len(np.unique(fit_on, axis=0))
    for k in k_range:
        if k >= len(fit_on) or k >= distinct:
            break
        model = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(fit_on)
        sample = min(silhouette_sample, len(fit_on))
        scores[k] = float(silhouette_score(fit_on, model.labels_, sample_size=sample, random_state=seed))
        fits[k] = model
    if not scores:
        raise ValueError(f"too few customers ({len(scaled)}) to cluster")
    best = max(scores, key=lambda k: (scores[k], -k))
    raw = fits[best].labels_ if fit_on is scaled else fits[best].predict(scaled)
    # renumber by size, largest first; ties by the smallest original label
    order = np.argsort(-np.bincount(raw, minlength=best), kind="stable")
    relabel = np.empty(best, dtype=np.int64)
    relabel[order] = np.arange(best)
    labels = relabel[raw]
    z = _cluster_means(scaled, labels)
    original = _cluster_means(features.select(pl.col(list(BEHAVIOURAL_FEATURES)).cast(pl.Float64)).to_numpy(), labels)
    original = original.with_columns(size=np.bincount(labels)[original["cluster_id"].to_numpy()])
    descriptions = {row.pop("cluster_id"): describe(row) for row in z.iter_rows(named=True)}
    out = pl.DataFrame(
        {
            "customer_key": features["customer_key"],
            "cluster_id": labels,
            "cluster_description": [descriptions[c] for c in labels.tolist()],
        }
    )
    return ClusteringResult(
        labels=out,
        k=best,
        silhouette_by_k=scores,
        sizes=dict(original.select("cluster_id", "size").iter_rows()),
        profiles=original,
        z_profiles=z,
        descriptions=descriptions,
    )


def _cluster_means(values: np.ndarray, labels: np.ndarray) -> pl.DataFrame:
    """cluster_id and the mean of each behavioural feature (a column of `values`) per cluster,
    missing values left out, by cluster. numpy sums each cluster's column pairwise, in row order,
    on one thread."""
    clusters = np.unique(labels)
    # a feature missing for a whole cluster has a NaN mean, which numpy warns about
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        means = np.vstack([np.nanmean(np.asfortranarray(values[labels == c]), axis=0) for c in clusters])
    return pl.DataFrame({"cluster_id": clusters, **dict(zip(BEHAVIOURAL_FEATURES, means.T, strict=True))})
