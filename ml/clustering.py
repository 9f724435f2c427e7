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

from dataclasses import dataclass

import numpy as np
import pandas as pd
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
    labels: pd.DataFrame  # customer_key, cluster_id, cluster_description
    k: int
    silhouette_by_k: dict[int, float]
    sizes: dict[int, int]
    profiles: pd.DataFrame  # cluster_id x feature means (original units), plus size
    z_profiles: pd.DataFrame  # cluster_id x feature, standard deviations from the overall mean
    descriptions: dict[int, str]


def prepare(features: pd.DataFrame) -> pd.DataFrame:
    x = pd.DataFrame(index=features.index)
    for col, (log, _, _) in BEHAVIOURAL_FEATURES.items():
        values = features[col].astype(float)
        values = values.fillna(NEVER if col == "recency_days" else 0.0)
        x[col] = np.log1p(values.clip(lower=0)) if log else values
    return x


def describe(z_row: pd.Series, top: int = 3) -> str:
    strongest = z_row.abs().sort_values(ascending=False, kind="stable").head(top)
    parts = []
    for col in strongest.index:
        z = z_row[col]
        _, above, below = BEHAVIOURAL_FEATURES[col]
        parts.append(f"{above if z > 0 else below} ({z:+.1f} sd)")
    return "; ".join(parts)


def clustering_shortfall(features: pd.DataFrame, k_min: int) -> str | None:
    """Why these customers cannot be clustered into at least `k_min` clusters (too few customers,
    or too few distinct behaviours), or None when they can. The clusters asset skips with this
    reason instead of failing (thin data, issue 32)."""
    if len(features) <= k_min:
        return f"{len(features)} customers with an order: at least {k_min + 1} are needed for {k_min} clusters"
    distinct = len(np.unique(prepare(features).to_numpy(), axis=0))
    if distinct <= k_min:
        return f"{len(features)} customers with an order but {distinct} distinct behaviours: at least {k_min + 1} are needed for {k_min} clusters"
    return None


def cluster_customers(
    features: pd.DataFrame,
    k_range: range = range(K_MIN, K_MAX + 1),
    seed: int = 42,
    silhouette_sample: int = 5_000,
    n_init: int = 5,
    fit_sample: int = FIT_SAMPLE,
) -> ClusteringResult:
    x = prepare(features)
    scaled = StandardScaler().fit_transform(x.to_numpy())
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
    order = pd.Series(raw).value_counts().sort_index().sort_values(ascending=False, kind="stable").index
    relabel = np.empty(best, dtype=int)
    relabel[order.to_numpy()] = np.arange(len(order))
    labels = relabel[raw]
    z = pd.DataFrame(scaled, columns=x.columns).groupby(labels).mean()
    original = features[list(BEHAVIOURAL_FEATURES)].astype(float).assign(cluster_id=labels).groupby("cluster_id").mean()
    original["size"] = pd.Series(labels).value_counts().sort_index()
    descriptions = {int(c): describe(z.loc[c]) for c in z.index}
    out = pd.DataFrame(
        {
            "customer_key": features["customer_key"].to_numpy(),
            "cluster_id": labels,
            "cluster_description": pd.Series(labels).map(descriptions).to_numpy(),
        }
    )
    return ClusteringResult(
        labels=out,
        k=best,
        silhouette_by_k=scores,
        sizes={int(c): int(n) for c, n in original["size"].items()},
        profiles=original.reset_index(),
        z_profiles=z.reset_index(names="cluster_id"),
        descriptions=descriptions,
    )
