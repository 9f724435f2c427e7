"""LightFM hybrid recommender: matrices, training, scoring, time-split evaluation and a baseline.

Everything here is plain numpy/scipy on arrays handed in by the caller, so it can be tested on
tiny fixtures and reused by any orchestration. Matrices are built directly from index arrays (no
Python loop over interactions), and scoring works in user chunks so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
    # the last test_days of interactions form the holdout
    test_days: int = 21
    k: int = 10

    def as_dict(self) -> dict:
        return asdict(self)

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


@dataclass
class Evaluation:
    metrics: dict[str, float]
    n_users: int
    split_at: pd.Timestamp
    extra: dict = field(default_factory=dict)


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


def weighted_matrix(inter: pd.DataFrame, shape: tuple[int, int], params: RecommenderParams) -> sp.coo_matrix:
    """Sum of interaction weights per (user, item); duplicates are summed by the COO->CSR step."""
    w = inter["interaction_type"].map(params.weight_of()).fillna(0.0).to_numpy(dtype=np.float32)
    m = sp.csr_matrix((w, (inter["u"].to_numpy(), inter["i"].to_numpy())), shape=shape)
    m.sum_duplicates()
    m.eliminate_zeros()
    return m.tocoo()


def fit(data: RecData, inter: pd.DataFrame, params: RecommenderParams) -> LightFM:
    shape = (len(data.users.ids), len(data.items.ids))
    weights = weighted_matrix(inter, shape, params)
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


class LightFMScorer:
    """Dense user/item representations, so scoring is a matrix product per user chunk."""

    def __init__(self, model: LightFM, data: RecData):
        self.user_bias, self.user_emb = model.get_user_representations(data.users.matrix)
        self.item_bias, self.item_emb = model.get_item_representations(data.items.matrix)

    def __call__(self, user_idx: np.ndarray) -> np.ndarray:
        return (
            self.user_emb[user_idx] @ self.item_emb.T + self.user_bias[user_idx, None] + self.item_bias[None, :]
        ).astype(np.float64)


class PopularityScorer:
    """Most popular items by number of distinct buyers (then by any interaction) in training."""

    def __init__(self, inter: pd.DataFrame, n_items: int):
        buyers = inter.loc[inter["interaction_type"] == "purchase"].drop_duplicates(["u", "i"])
        touched = inter.drop_duplicates(["u", "i"])
        self.scores = np.bincount(buyers["i"], minlength=n_items) + 1e-3 * np.bincount(
            touched["i"], minlength=n_items
        ) / max(len(touched), 1)

    def __call__(self, user_idx: np.ndarray) -> np.ndarray:
        return np.tile(self.scores, (len(user_idx), 1))


def _pairs_to_csr(inter: pd.DataFrame, shape) -> sp.csr_matrix:
    pairs = inter.drop_duplicates(["u", "i"])
    return sp.csr_matrix((np.ones(len(pairs), dtype=bool), (pairs["u"], pairs["i"])), shape=shape)


def ranking_metrics(
    scores: np.ndarray, exclude: sp.csr_matrix, positives: sp.csr_matrix, k: int
) -> dict[str, np.ndarray]:
    """Per-user precision@k, recall@k and AUC from a full ranking over the catalogue.

    exclude: items not to rank (already bought in training); positives: held-out items.
    """
    scores = scores.copy()
    ex_r, ex_c = exclude.nonzero()
    scores[ex_r, ex_c] = -np.inf
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    pos = positives.toarray()
    hits = np.take_along_axis(pos, top, axis=1).sum(axis=1)
    n_pos = pos.sum(axis=1)
    n_ex = np.asarray(exclude.sum(axis=1)).ravel()
    n_neg = scores.shape[1] - n_ex - n_pos
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1) - n_ex[:, None]  # 1-based rank among ranked candidates
    pos_rank_sum = np.where(pos, ranks, 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return {"precision": hits / k, "recall": hits / np.maximum(n_pos, 1), "auc": auc}


def evaluate(data: RecData, params: RecommenderParams, chunk: int = 2048) -> tuple[LightFM, Evaluation, Evaluation]:
    """Train on interactions before the split, evaluate LightFM and popularity on purchases after it.

    Test users are those with a held-out purchase of an item they had not bought in training and
    with at least one training interaction (warm users). Items bought in training are excluded
    from the ranking for both models.
    """
    inter = data.interactions
    split_at = inter["occurred_at"].max().normalize() - pd.Timedelta(days=params.test_days - 1)
    train = inter[inter["occurred_at"] < split_at]
    test = inter[(inter["occurred_at"] >= split_at) & (inter["interaction_type"] == "purchase")]
    shape = (len(data.users.ids), len(data.items.ids))
    bought_before = _pairs_to_csr(train[train["interaction_type"] == "purchase"], shape)
    test = test[
        ~test.set_index(["u", "i"]).index.isin(
            train[train["interaction_type"] == "purchase"].set_index(["u", "i"]).index
        )
    ]
    warm = np.unique(train["u"].to_numpy())
    test = test[test["u"].isin(warm)]
    positives = _pairs_to_csr(test, shape)
    test_users = np.unique(test["u"].to_numpy())

    model = fit(data, train, params)
    results = []
    for scorer in (LightFMScorer(model, data), PopularityScorer(train, shape[1])):
        per_user = {"precision": [], "recall": [], "auc": []}
        for start in range(0, len(test_users), chunk):
            idx = test_users[start : start + chunk]
            m = ranking_metrics(scorer(idx), bought_before[idx], positives[idx], params.k)
            for key in per_user:
                per_user[key].append(m[key])
        agg = {
            key: float(np.nanmean(np.concatenate(v))) if v and len(np.concatenate(v)) else float("nan")
            for key, v in per_user.items()
        }
        results.append(
            Evaluation(
                metrics={
                    f"precision_at_{params.k}": agg["precision"],
                    f"recall_at_{params.k}": agg["recall"],
                    "auc": agg["auc"],
                },
                n_users=len(test_users),
                split_at=split_at,
                extra={"train_interactions": len(train), "test_purchases": int(positives.sum())},
            )
        )
    return model, results[0], results[1]


def recommend(
    model: LightFM,
    data: RecData,
    exclude: sp.csr_matrix,
    eligible_items: np.ndarray,
    k: int,
    chunk: int = 4096,
) -> pd.DataFrame:
    """Top-k eligible items per user, excluding already-bought pairs; one row per recommendation."""
    scorer = LightFMScorer(model, data)
    n_users = len(data.users.ids)
    blocked = ~eligible_items
    frames = []
    item_ids = np.asarray(data.items.ids)
    user_ids = np.asarray(data.users.ids)
    kk = min(k, int(eligible_items.sum()))
    for start in range(0, n_users, chunk):
        idx = np.arange(start, min(start + chunk, n_users))
        scores = scorer(idx)
        scores[:, blocked] = -np.inf
        ex_r, ex_c = exclude[idx].nonzero()
        scores[ex_r, ex_c] = -np.inf
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
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
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def purchased_matrix(data: RecData) -> sp.csr_matrix:
    inter = data.interactions
    return _pairs_to_csr(inter[inter["interaction_type"] == "purchase"], (len(data.users.ids), len(data.items.ids)))
