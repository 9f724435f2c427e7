"""LightFM hybrid recommender: matrices, training and scoring (evaluation: ml/rec_evaluation.py).

Everything here is plain numpy/scipy on arrays handed in by the caller, so it can be tested on
tiny fixtures and reused by any orchestration. Matrices are built directly from index arrays (no
Python loop over interactions), and scoring works in user chunks so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightfm import LightFM


@dataclass(frozen=True)
class RecommenderParams:
    loss: str = "warp"
    no_components: int = 32
    learning_rate: float = 0.05
    epochs: int = 30
    item_alpha: float = 1e-6
    user_alpha: float = 1e-6
    seed: int = 42
    # implicit-feedback weights per interaction type
    weight_view: float = 1.0
    weight_cart: float = 2.0
    weight_purchase: float = 4.0
    # weight of the metadata features relative to the identity feature (1 = as LightFM's Dataset)
    feature_weight: float = 1.0
    # time decay: an interaction half_life_days older than the newest training one counts half
    # (0 = no decay)
    half_life_days: float = 0.0
    # the last test_days of interactions form the holdout
    test_days: int = 21
    # window of the recently-popular baseline
    recent_days: int = 14
    k: int = 10

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_logged(cls, logged: dict[str, str]) -> RecommenderParams:
        """Rebuild from MLflow params (strings); names that are not fields are ignored."""
        values = {}
        for f in fields(cls):
            if f.name in logged:
                kind = type(getattr(cls(), f.name))
                values[f.name] = kind(float(logged[f.name])) if kind in (int, float) else kind(logged[f.name])
        return cls(**values)

    def weight_of(self) -> dict[str, float]:
        return {"view": self.weight_view, "cart": self.weight_cart, "purchase": self.weight_purchase}


@dataclass
class FeatureSpace:
    """Id maps and a row-normalised [identity | features] matrix, as LightFM's Dataset builds."""

    ids: list[str]
    id_map: dict[str, int]
    feature_names: list[str]
    matrix: sp.csr_matrix


@dataclass
class RecData:
    users: FeatureSpace
    items: FeatureSpace
    interactions: pd.DataFrame  # customer_key, product_id, interaction_type, occurred_at, u, i


def feature_space(frame: pd.DataFrame, id_column: str, feature_columns: list[str]) -> FeatureSpace:
    """One-hot "column:value" features plus an identity feature per row, rows summing to 1."""
    frame = frame.sort_values(id_column).reset_index(drop=True)
    ids = frame[id_column].astype(str).tolist()
    n = len(ids)
    names: list[str] = [f"id:{i}" for i in ids]
    rows = [np.arange(n)]
    cols = [np.arange(n)]
    for column in feature_columns:
        values = frame[column].fillna("unknown").astype(str)
        codes, uniques = pd.factorize(values, sort=True)
        rows.append(np.arange(n))
        cols.append(len(names) + codes)
        names.extend(f"{column}:{u}" for u in uniques)
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    m = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, len(names)))
    row_sums = np.asarray(m.sum(axis=1)).ravel()
    m = sp.diags(1.0 / row_sums).dot(m).tocsr().astype(np.float32)
    return FeatureSpace(ids=ids, id_map={k: i for i, k in enumerate(ids)}, feature_names=names, matrix=m)


def build_data(
    users: pd.DataFrame,
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    user_feature_columns: list[str],
    item_feature_columns: list[str],
) -> RecData:
    u = feature_space(users, "customer_key", user_feature_columns)
    i = feature_space(items, "product_id", item_feature_columns)
    inter = interactions.copy()
    inter["u"] = inter["customer_key"].map(u.id_map)
    inter["i"] = inter["product_id"].map(i.id_map)
    inter = inter.dropna(subset=["u", "i"])
    inter["u"] = inter["u"].astype(np.int64)
    inter["i"] = inter["i"].astype(np.int64)
    inter["occurred_at"] = pd.to_datetime(inter["occurred_at"])
    return RecData(users=u, items=i, interactions=inter.reset_index(drop=True))


def with_feature_weight(data: RecData, weight: float) -> RecData:
    """Metadata features scaled by `weight` against the identity feature, rows renormalised to 1:
    below 1 the model leans on each id's own history, above 1 on what similar ids share."""
    if weight == 1.0:
        return data

    def scaled(space: FeatureSpace) -> FeatureSpace:
        n = len(space.ids)
        if len(space.feature_names) == n:
            return space
        scale = np.ones(len(space.feature_names), dtype=np.float32)
        scale[n:] = weight
        m = space.matrix.multiply(scale[None, :]).tocsr()
        sums = np.asarray(m.sum(axis=1)).ravel()
        m = sp.diags(1.0 / sums).dot(m).tocsr().astype(np.float32)
        return FeatureSpace(space.ids, space.id_map, space.feature_names, m)

    return RecData(users=scaled(data.users), items=scaled(data.items), interactions=data.interactions)


def ids_only(data: RecData) -> RecData:
    """The same users, items and interactions with identity features only (pure collaborative
    LightFM), to show what the metadata features add."""

    def plain(space: FeatureSpace) -> FeatureSpace:
        n = len(space.ids)
        return FeatureSpace(space.ids, space.id_map, space.feature_names[:n], sp.identity(n, dtype=np.float32, format="csr"))

    return RecData(users=plain(data.users), items=plain(data.items), interactions=data.interactions)


def weighted_matrix(
    inter: pd.DataFrame, shape: tuple[int, int], params: RecommenderParams, reference: pd.Timestamp | None = None
) -> sp.coo_matrix:
    """Sum of interaction weights per (user, item); duplicates are summed by the COO->CSR step.
    With params.half_life_days > 0 each weight decays by half per half-life of age before
    `reference` (default: the newest interaction)."""
    w = inter["interaction_type"].map(params.weight_of()).fillna(0.0).to_numpy(dtype=np.float32)
    if params.half_life_days > 0 and len(inter):
        reference = inter["occurred_at"].max() if reference is None else reference
        age_days = (reference - inter["occurred_at"]).dt.total_seconds().to_numpy() / 86400.0
        w = w * np.power(0.5, np.clip(age_days, 0, None) / params.half_life_days).astype(np.float32)
    m = sp.csr_matrix((w, (inter["u"].to_numpy(), inter["i"].to_numpy())), shape=shape)
    m.sum_duplicates()
    m.eliminate_zeros()
    return m.tocoo()


def fit(data: RecData, inter: pd.DataFrame, params: RecommenderParams, reference: pd.Timestamp | None = None) -> LightFM:
    shape = (len(data.users.ids), len(data.items.ids))
    weights = weighted_matrix(inter, shape, params, reference)
    binary = sp.coo_matrix((np.ones_like(weights.data), (weights.row, weights.col)), shape=shape)
    model = LightFM(
        no_components=params.no_components,
        loss=params.loss,
        learning_rate=params.learning_rate,
        item_alpha=params.item_alpha,
        user_alpha=params.user_alpha,
        random_state=np.random.RandomState(params.seed),
    )
    # One thread: LightFM's Hogwild updates are not reproducible across threads.
    model.fit(
        binary,
        user_features=data.users.matrix,
        item_features=data.items.matrix,
        sample_weight=weights,
        epochs=params.epochs,
        num_threads=1,
    )
    return model


def without_identity(space: FeatureSpace, cold: np.ndarray | None) -> sp.csr_matrix:
    """The feature matrix with the identity feature of `cold` rows zeroed: an id never seen in
    training has an untrained embedding, so a cold user or item is represented by what its
    metadata features contributed in training, at the same weights. Rows with no other feature
    keep the identity (there is nothing else)."""
    if cold is None or not cold.any():
        return space.matrix
    n = len(space.ids)
    has_features = np.diff(space.matrix[:, n:].tocsr().indptr) > 0
    rows = np.flatnonzero(cold & has_features)
    keep = np.ones(n, dtype=np.float32)
    keep[rows] = 0.0
    m = space.matrix.tocsc()
    # the identity block is diagonal: scaling column j by keep[j] zeroes exactly row j's identity
    m = sp.hstack([m[:, :n].multiply(keep[None, :]), m[:, n:]], format="csr")
    m.eliminate_zeros()
    return m.astype(np.float32)


class LightFMScorer:
    """Dense user/item representations, so scoring is a matrix product per user chunk. Users and
    items flagged cold (no training interaction) are represented by their features only."""

    def __init__(
        self, model: LightFM, data: RecData, cold_users: np.ndarray | None = None, cold_items: np.ndarray | None = None
    ):
        self.user_bias, self.user_emb = model.get_user_representations(without_identity(data.users, cold_users))
        self.item_bias, self.item_emb = model.get_item_representations(without_identity(data.items, cold_items))

    def __call__(self, user_idx: np.ndarray) -> np.ndarray:
        return (
            self.user_emb[user_idx] @ self.item_emb.T + self.user_bias[user_idx, None] + self.item_bias[None, :]
        ).astype(np.float64)


def recommend(
    model: LightFM,
    data: RecData,
    exclude: sp.csr_matrix,
    eligible_items: np.ndarray,
    k: int,
    chunk: int = 4096,
    cold_users: np.ndarray | None = None,
    popular_users: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
) -> pd.DataFrame:
    """Top-k eligible items per user, `exclude` pairs left out; one row per recommendation, with
    its source: 'personalised' (history), 'cold_start_features' (no history: ranked by the user's
    features alone, see without_identity) or 'popularity' (rows of `popular_users` get the
    `popularity` scores: no usable features, or no consent to personalise)."""
    n_users = len(data.users.ids)
    cold = np.zeros(n_users, dtype=bool) if cold_users is None else cold_users
    popular = np.zeros(n_users, dtype=bool) if popular_users is None else popular_users
    if popular.any() and popularity is None:
        raise ValueError("popular_users given without popularity scores")
    scorer = LightFMScorer(model, data, cold_users=cold & ~popular)
    source = np.where(popular, "popularity", np.where(cold, "cold_start_features", "personalised"))
    blocked = ~eligible_items
    frames = []
    item_ids = np.asarray(data.items.ids)
    user_ids = np.asarray(data.users.ids)
    kk = min(k, int(eligible_items.sum()))
    for start in range(0, n_users, chunk):
        idx = np.arange(start, min(start + chunk, n_users))
        scores = scorer(idx)
        rows = popular[idx]
        if rows.any():
            scores[rows] = popularity[None, :]
        scores[:, blocked] = -np.inf
        ex_r, ex_c = exclude[idx].nonzero()
        scores[ex_r, ex_c] = -np.inf
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)  # best first; ties: lower item index
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        valid = np.isfinite(top_scores)
        rank = np.tile(np.arange(1, kk + 1), (len(idx), 1))
        frames.append(
            pd.DataFrame(
                {
                    "customer_key": np.repeat(user_ids[idx], kk)[valid.ravel()],
                    "rank": rank.ravel()[valid.ravel()],
                    "product_id": item_ids[top.ravel()][valid.ravel()],
                    "score": top_scores.ravel()[valid.ravel()],
                    "source": np.repeat(source[idx], kk)[valid.ravel()],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def apply_rules(pool: pd.DataFrame, item_category: pd.Series, top_n: int, max_per_category: int) -> pd.DataFrame:
    """Business rules on ranked candidates: at most `max_per_category` items of one category per
    customer (the best ones), then the first `top_n`, ranks renumbered 1..n. `item_category`
    maps product_id -> category. Vectorised with group-wise cumulative counts."""
    if top_n < 1 or max_per_category < 1:
        raise ValueError(f"top_n and max_per_category must be >= 1, got {top_n} and {max_per_category}")
    frame = pool.sort_values(["customer_key", "rank"], kind="stable").reset_index(drop=True)
    frame["category"] = frame["product_id"].map(item_category).fillna("unknown").to_numpy()
    frame = frame[frame.groupby(["customer_key", "category"], sort=False).cumcount() < max_per_category]
    frame = frame.assign(rank=frame.groupby("customer_key", sort=False).cumcount() + 1)
    return frame[frame["rank"] <= top_n].reset_index(drop=True)


def pairs_matrix(inter: pd.DataFrame, shape: tuple[int, int]) -> sp.csr_matrix:
    """1 for every distinct (u, i) pair in `inter`."""
    pairs = inter[["u", "i"]].drop_duplicates()
    return sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (pairs["u"], pairs["i"])), shape=shape)


def purchased_matrix(data: RecData) -> sp.csr_matrix:
    inter = data.interactions
    return pairs_matrix(inter[inter["interaction_type"] == "purchase"], (len(data.users.ids), len(data.items.ids)))
