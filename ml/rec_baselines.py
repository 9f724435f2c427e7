"""Non-learned recommender baselines: all-time popularity, recent popularity, item-item cosine.

They follow the scorer interface of `ml.recommender.PopularityScorer`: built from training
interactions (a DataFrame with integer `u` / `i` indices, `interaction_type` in view / cart /
purchase and an `occurred_at` Timestamp), then called with an array of user indices to return a
dense float64 (users x items) matrix where higher is better.

Everything is built from index arrays with bincount and scipy.sparse (no Python loop over
interactions, users or items); only the item-item similarity is built in item chunks, so that a
block of the sparse product spans at most `_BLOCK_CELLS` (rows x n_items) cells. The scores
carry their own tie-breaks, so a full ranking does not depend on how the ranking code orders
equal scores:

- MostPopular: buyers + position / n_items, where position (0 .. n_items - 1) orders the items by
  distinct users with any interaction, then lower index first. The fraction is below 1, so
  floor(score) is the number of distinct buyers and one more buyer always wins.
- RecentlyPopular: recent + step * position / n_items, recent = sum over the distinct (user, item)
  purchases of the last `window_days` of 2 ** (-age_days / half_life_days), and position the
  MostPopular order. step = min(smallest weight a recent purchase can have, smallest gap between
  two distinct recent values), so the tie-break only orders items whose recent value is equal.
- ItemItemCooccurrence: X[user] @ S with S the cosine similarity of the columns of X (zero
  diagonal, optionally pruned to each item's top neighbours); items with no co-occurrence score
  (every item, for a user without history) get MostPopular / (max + 1) - 1, in [-1, 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml.recommender import type_weights

# Rows of the item-item similarity built at once: as many as make 2**22 (rows x n_items) cells,
# so a block of the sparse product holds at most that many nonzeros.
_BLOCK_CELLS = 2**22


def _ordinal(key: np.ndarray) -> np.ndarray:
    """Position 0 .. n - 1 of every item sorted by key ascending; equal keys put the lower index higher."""
    n = len(key)
    order = np.lexsort((-np.arange(n), key))  # last key is the primary one
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    return position


def _distinct_users_per_item(inter: pd.DataFrame, n_items: int) -> np.ndarray:
    items = inter.drop_duplicates(["u", "i"])["i"].to_numpy(dtype=np.int64)
    return np.bincount(items, minlength=n_items)


def _tiled(scores: np.ndarray, user_idx: np.ndarray) -> np.ndarray:
    return np.tile(scores, (len(np.asarray(user_idx)), 1))


class MostPopular:
    """Items by number of distinct buyers in training.

    Ties are broken by the number of distinct users with any interaction, then by the lower item
    index, through a fraction in [0, 1) added to the buyer count (see the module docstring).
    """

    def __init__(self, train: pd.DataFrame, n_items: int):
        self.buyers = _distinct_users_per_item(train.loc[train["interaction_type"] == "purchase"], n_items)
        self.users = _distinct_users_per_item(train, n_items)
        self.scores = self.buyers + _ordinal(self.users) / n_items

    def __call__(self, user_idx: np.ndarray) -> np.ndarray:
        return _tiled(self.scores, user_idx)


def decay_weight(age_days: np.ndarray | float, half_life_days: float) -> np.ndarray:
    """exp(-age / half_life * ln 2): 1 now, 1/2 one half-life ago, 1/4 two half-lives ago."""
    return np.exp(-np.asarray(age_days, dtype=np.float64) / half_life_days * np.log(2.0))


class RecentlyPopular:
    """Distinct buyers of the last `window_days` before the latest training timestamp, decayed.

    Each (user, item) purchase pair in the window counts once, at its latest purchase, with weight
    `decay_weight(age_days, half_life_days)`; age is measured from the latest training timestamp
    of any type and the window is age < window_days. half_life_days defaults to window_days / 2.
    All-time popularity (`MostPopular`) breaks ties, scaled so it never outranks a recent purchase.
    """

    def __init__(
        self,
        train: pd.DataFrame,
        n_items: int,
        window_days: int = 14,
        half_life_days: float | None = None,
    ):
        if window_days <= 0:
            raise ValueError(f"window_days must be positive, got {window_days!r}")
        self.window_days = window_days
        self.half_life_days = window_days / 2 if half_life_days is None else half_life_days
        if self.half_life_days <= 0:
            raise ValueError(f"half_life_days must be positive, got {self.half_life_days!r}")

        self.as_of = train["occurred_at"].max()
        age_days = (self.as_of - train["occurred_at"]) / pd.Timedelta(days=1)
        in_window = ((train["interaction_type"] == "purchase") & (age_days < window_days)).to_numpy()
        recent = train.loc[in_window, ["u", "i"]].assign(age_days=age_days.to_numpy()[in_window])
        latest = recent.groupby(["u", "i"], sort=False)["age_days"].min()
        items = latest.index.get_level_values("i").to_numpy(dtype=np.int64)
        self.recent = np.bincount(
            items, weights=decay_weight(latest.to_numpy(), self.half_life_days), minlength=n_items
        ).astype(np.float64)

        self.overall = MostPopular(train, n_items)
        # the weight of a purchase just inside the window: any item with a recent purchase has more
        floor = float(decay_weight(window_days, self.half_life_days))
        gaps = np.diff(np.unique(self.recent))
        step = min(floor, float(gaps.min())) if gaps.size else floor
        self.scores = self.recent + step * _ordinal(self.overall.scores) / n_items

    def __call__(self, user_idx: np.ndarray) -> np.ndarray:
        return _tiled(self.scores, user_idx)


def _user_item_matrix(
    train: pd.DataFrame, n_users: int, n_items: int, weights: dict[str, float] | None
) -> sp.csr_matrix:
    """One entry per (user, item) pair: 1, or the largest type weight among the pair's interactions.

    The largest (not the sum) so a user who viewed an item fifty times does not outweigh a buyer.
    """
    if weights is None:
        pairs = train.drop_duplicates(["u", "i"])
        u, i = pairs["u"].to_numpy(dtype=np.int64), pairs["i"].to_numpy(dtype=np.int64)
        w = np.ones(len(pairs))
    else:
        if any(v < 0 for v in weights.values()):
            raise ValueError(f"interaction weights must not be negative, got {weights!r}")
        w_all = pd.Series(type_weights(train["interaction_type"], weights), index=train.index)
        strongest = w_all.groupby([train["u"], train["i"]], sort=False).max()
        u = strongest.index.get_level_values(0).to_numpy(dtype=np.int64)
        i = strongest.index.get_level_values(1).to_numpy(dtype=np.int64)
        w = strongest.to_numpy(dtype=np.float64)
    x = sp.csr_matrix((w, (u, i)), shape=(n_users, n_items), dtype=np.float64)
    x.sum_duplicates()  # also sorts the column indices: sums below run in a fixed order
    x.eliminate_zeros()
    return x


def _top_per_row(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int | None) -> np.ndarray:
    """Mask of the entries to keep: per row, the k largest positive values; a tie at the cut keeps
    the lower column indices. One lexsort over the entries (row, then value descending, then
    column), so no dense row is ever built."""
    keep = vals > 0
    if k is None:
        return keep
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((cols, -vals, rows))  # the last key is the primary one
    sorted_rows = rows[order]
    first = np.searchsorted(sorted_rows, sorted_rows, side="left")  # where each entry's row starts
    within = np.empty(len(order), dtype=np.int64)
    within[order] = np.arange(len(order)) - first  # 0 for a row's largest value
    out = np.zeros(len(keep), dtype=bool)
    out[np.flatnonzero(keep)] = within < k
    return out


def cosine_similarity(x: sp.csr_matrix, top_neighbours: int | None = None) -> sp.csr_matrix:
    """Item x item cosine similarity of the columns of x, zero diagonal, as a sparse matrix.

    S[i, j] = x_i . x_j / (|x_i| |x_j|). With top_neighbours, row i keeps only its top_neighbours
    largest positive similarities. Built in chunks of rows of the sparse product, each pruned on
    its nonzero entries: no dense n_items-wide row (and no dense copy of x) is ever made.
    """
    if top_neighbours is not None and top_neighbours < 1:
        raise ValueError(f"top_neighbours must be a positive integer or None, got {top_neighbours!r}")
    n_items = x.shape[1]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    unit = (x @ sp.diags(inv)).tocsr()
    unit_t = unit.T.tocsr()  # item x user, for row slices
    chunk = max(1, _BLOCK_CELLS // max(n_items, 1))
    rows, cols, vals = [], [], []
    for start in range(0, n_items, chunk):
        stop = min(start + chunk, n_items)
        block = (unit_t[start:stop] @ unit).tocoo()
        r, c, v = block.row.astype(np.int64), block.col.astype(np.int64), block.data
        off_diagonal = c != r + start
        r, c, v = r[off_diagonal], c[off_diagonal], v[off_diagonal]
        keep = _top_per_row(r, c, v, top_neighbours)
        rows.append(r[keep] + start)
        cols.append(c[keep])
        vals.append(v[keep])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items))


class ItemItemCooccurrence:
    """Item-item collaborative filtering on cosine similarity of the user x item matrix.

    X: user x item, 1 per training pair, or the largest `weights[type]` over the pair's
    interactions (e.g. {"view": 1, "cart": 2, "purchase": 4}). S = cosine_similarity(X,
    top_neighbours). score(user, j) = sum_i X[user, i] * S[i, j]. Items with no positive score
    (all items, for a user without training history) get the MostPopular scores scaled into
    [-1, 0), below any co-occurrence score, so every row is a full ranking. Equal positive scores
    stay equal.
    """

    def __init__(
        self,
        train: pd.DataFrame,
        n_users: int,
        n_items: int,
        weights: dict[str, float] | None = None,
        top_neighbours: int | None = 50,
    ):
        self.user_items = _user_item_matrix(train, n_users, n_items, weights)
        self.similarity = cosine_similarity(self.user_items, top_neighbours)
        popularity = MostPopular(train, n_items).scores
        self.fallback = popularity / (popularity.max(initial=0.0) + 1.0) - 1.0

    def __call__(self, user_idx: np.ndarray) -> np.ndarray:
        scores = (self.user_items[np.asarray(user_idx)] @ self.similarity).toarray()
        np.copyto(scores, self.fallback[None, :], where=scores <= 0)  # in place: no second dense copy
        return scores
