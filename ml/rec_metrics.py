"""Top-k ranking metrics from a model's full ranking over the catalogue.

Plain numpy/scipy, following the conventions of `ml.recommender`: the caller scores one chunk of
users at a time into a dense (users x items) float matrix, relevant and excluded items come as
scipy.sparse matrices of (user index, item index) pairs, and a score of -inf marks an item that
must not be ranked. Everything is vectorised over the rows of a chunk, so memory is
O(chunk x n_items); looping over chunks is the caller's job, with `MetricAccumulator` collecting
the results.

Definitions, for one user with k slots, `rel_i` = 1 when the item in slot i is relevant and
n_pos = number of relevant candidates (a candidate is an item whose score is not -inf after
exclusion):

- precision@k = hits / k, recall@k = hits / n_pos
- ndcg@k = sum_i rel_i / log2(i + 1) divided by the same sum for min(n_pos, k) hits in the first slots
- ap@k = sum_i precision@i * rel_i / min(n_pos, k)
- auc = P(score of a random relevant candidate > score of a random non-relevant candidate),
  ties counting 1/2 (the Mann-Whitney U statistic over average ranks, divided by n_pos * n_neg)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

METRICS = ("precision", "recall", "ndcg", "ap", "auc")


def _as_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-d (users x items) array, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; use -inf for items that must not be ranked")
    return scores


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _as_mask(pairs: sp.spmatrix | np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    """Dense boolean (users x items) mask of the nonzero entries (explicit zeros are not pairs)."""
    if pairs.shape != shape:
        raise ValueError(f"{name} has shape {pairs.shape}, scores have shape {shape}")
    dense = pairs.toarray() if sp.issparse(pairs) else np.asarray(pairs)
    return dense != 0


def _ratio(numerator: np.ndarray, denominator: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """numerator / denominator where `defined`, NaN elsewhere (and no division warnings)."""
    out = np.full(defined.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=defined)
    return out


# Largest (pairs x n_items) block compared at once while ranking the relevant entries.
_RANK_CELLS = 2**22


def _average_ranks(scores: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """1-based rank of scores[row, col] within its row, tied entries sharing their mean rank.

    The same numbers as scipy.stats.rankdata(scores, axis=1)[row, col], but only for the
    requested entries: each is compared with its row (entries below it, entries at most it), a
    linear pass where a sort of the row would be n log n, in blocks of rows of at most
    _RANK_CELLS cells. The relevant entries are a few per user, so this is far cheaper than
    ranking whole rows.
    """
    row = np.asarray(row)
    value = scores[row, col]
    below = np.empty(len(row), dtype=np.int64)
    at_most = np.empty(len(row), dtype=np.int64)
    step = max(1, _RANK_CELLS // max(scores.shape[1], 1))
    for start in range(0, len(row), step):
        block = scores[row[start : start + step]]
        v = value[start : start + step, None]
        below[start : start + step] = np.count_nonzero(block < v, axis=1)
        at_most[start : start + step] = np.count_nonzero(block <= v, axis=1)
    return (below + 1 + at_most) / 2  # mean of the ranks below + 1 .. at_most held by the tie


def top_candidates(
    scores: np.ndarray, pool: int, tie_key: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `pool` best items (columns) of each row of `scores` (users x items), best first, ties
    broken by the lower `tie_key` of the column (default: the column index); -inf scores are
    never candidates. Returns (top, top_scores, valid), each rows x pool; `valid` is False where
    a row has fewer than `pool` finite scores.

    A full argpartition of every row costs ~28 ns per score; this prunes first: the items are
    cut into about 4 x pool blocks, and the pool-th largest block maximum is a lower bound for
    the pool-th best score (the `pool` blocks at or above it each hold an item at least that
    good). Only blocks whose maximum reaches the bound can hold a candidate, so only they are
    copied out and compared, and only their items at or above the bound are sorted (typically
    a few per block). A row's scores are read in full once, for the block maxima.

    The bound only prunes when a block's items are a fair sample of the row. Columns in catalogue
    order put a category's products side by side, and similar products score alike: at 1M
    customers the best category's blocks passed whole, 3,600 candidates a row, and sorting them
    took 72 % of the scoring (py-spy). `recommend` therefore scores the columns in a fixed shuffled order
    and passes the item index as `tie_key`."""
    rows, n = scores.shape
    pool = min(pool, n)
    width = max(1, n // (4 * pool))
    blocks = n // width
    full = blocks * width
    view = scores[:, :full].reshape(rows, blocks, width)
    block_max = view.max(axis=2)
    tail = scores[:, full:]  # fewer than `width` items: one more block
    if full < n:
        block_max = np.concatenate([block_max, tail.max(axis=1, keepdims=True)], axis=1)
    kth = min(pool, block_max.shape[1])
    bound = np.partition(block_max, block_max.shape[1] - kth, axis=1)[:, block_max.shape[1] - kth]
    # a row short of `pool` finite scores has bound -inf: the lowest finite value keeps -inf out
    bound = np.maximum(bound, np.finfo(scores.dtype).min)
    block_row, block = np.nonzero(block_max[:, :blocks] >= bound[:, None])  # by row, then block
    values = view[block_row, block]
    hit = np.flatnonzero(values >= bound[block_row, None])
    r = block_row[hit // width]
    c = block[hit // width] * width + hit % width  # ascending within a row
    v = values.ravel()[hit]
    if full < n:
        tail_r, tail_c = np.nonzero(tail >= bound[:, None])
        r = np.concatenate([r, tail_r])
        c = np.concatenate([c, tail_c + full])
        v = np.concatenate([v, tail[tail_r, tail_c]])
    # by row, best first, ties by the lower key
    order = np.lexsort((c if tie_key is None else tie_key[c], -v, r))
    r, c, v = r[order], c[order], v[order]
    starts = np.searchsorted(r, np.arange(rows))
    position = np.arange(len(r)) - starts[r]
    chosen = position < pool
    top = np.zeros((rows, pool), dtype=np.int64)
    top_scores = np.full((rows, pool), -np.inf, dtype=scores.dtype)
    valid = np.zeros((rows, pool), dtype=bool)
    top[r[chosen], position[chosen]] = c[chosen]
    top_scores[r[chosen], position[chosen]] = v[chosen]
    valid[r[chosen], position[chosen]] = True
    return top, top_scores, valid


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best items per row, best first.

    Ties are broken by the lower item index (deterministic). Entries equal to -inf are never
    returned as hits: if a row has fewer than k finite scores, the remaining slots are -1.
    Exact, by top_candidates' pruning (a partition of every full row took a quarter of the
    evaluation at 50,000 items).
    """
    scores = _as_scores(scores)
    k = _check_k(k)
    n_users, n_items = scores.shape
    out = np.full((n_users, k), -1, dtype=np.int64)
    kk = min(k, n_items)
    if n_users == 0 or kk == 0:
        return out
    top, _, valid = top_candidates(scores, kk)
    out[:, :kk] = np.where(valid, top, -1)
    return out


def user_metrics(
    scores: np.ndarray,
    positives: sp.csr_matrix,
    k: int,
    exclude: sp.csr_matrix | None = None,
) -> dict[str, np.ndarray]:
    """Per-user precision, recall, ndcg, ap and auc at k, plus the `top` (users x k) item indices.

    scores: n_users x n_items floats; -inf marks an item that is not ranked.
    positives: held-out relevant items (same shape, nonzero = relevant).
    exclude: items removed from the ranking (e.g. already bought): set to -inf before ranking.

    Candidates are the items whose score is not -inf after exclusion. A relevant item that is not
    a candidate (excluded, or scored -inf) does not count in n_pos. Users with no relevant
    candidate get NaN for every metric; AUC is also NaN when a user has no non-relevant candidate.
    """
    ranked = _as_scores(scores).copy()
    k = _check_k(k)
    shape = ranked.shape
    if exclude is not None:
        ranked[_as_mask(exclude, shape, "exclude")] = -np.inf
    candidate = ranked != -np.inf
    relevant = _as_mask(positives, shape, "positives") & candidate
    n_pos = relevant.sum(axis=1)
    n_neg = candidate.sum(axis=1) - n_pos
    has_pos = n_pos > 0

    top = top_k(ranked, k)
    filled = top >= 0
    hit = np.take_along_axis(relevant, np.where(filled, top, 0), axis=1) & filled
    hits = hit.sum(axis=1)

    slot = np.arange(1, k + 1)
    discount = 1.0 / np.log2(slot + 1)
    dcg = hit @ discount
    # ideal DCG: min(n_pos, k) hits in the first slots; ideal_dcg[j] = sum of the first j discounts
    ideal_dcg = np.concatenate(([0.0], np.cumsum(discount)))[np.minimum(n_pos, k)]
    precision_at_slot = np.cumsum(hit, axis=1) / slot
    ap_sum = (precision_at_slot * hit).sum(axis=1)

    # Average ranks give ties half a win. The non-candidates all score -inf, so they take the
    # lowest n_out ranks and every candidate's rank among candidates is its rank minus n_out.
    n_out = shape[1] - candidate.sum(axis=1)
    user, item = np.nonzero(relevant)
    pos_rank_sum = np.bincount(user, weights=_average_ranks(ranked, user, item), minlength=shape[0])
    pos_rank_sum -= n_pos * n_out
    wins = pos_rank_sum - n_pos * (n_pos + 1) / 2  # Mann-Whitney U of relevant vs non-relevant

    return {
        "precision": _ratio(hits, np.full(n_pos.shape, k), has_pos),
        "recall": _ratio(hits, n_pos, has_pos),
        "ndcg": _ratio(dcg, ideal_dcg, has_pos),
        "ap": _ratio(ap_sum, np.minimum(n_pos, k), has_pos),
        "auc": _ratio(wins, n_pos * n_neg, has_pos & (n_neg > 0)),
        "top": top,
    }


def _mean(values: list[np.ndarray]) -> float:
    """Mean of the non-NaN values, NaN when there are none."""
    flat = np.concatenate(values) if values else np.empty(0)
    flat = flat[~np.isnan(flat)]
    return float(flat.mean()) if flat.size else float("nan")


class MetricAccumulator:
    """Aggregates `user_metrics` over user chunks into one set of numbers per model.

    Means are over the users with at least one relevant candidate (the evaluated users); AUC
    leaves out the evaluated users for whom it is undefined. Coverage and novelty are computed
    over the top-k lists of the evaluated users, slots marked -1 left out:

    - coverage_at_k = distinct recommended items / n_items
    - novelty_at_k = mean over recommended (user, slot) pairs of -log2(max(p_i, min_popularity)),
      p_i = item_popularity[i], the share of training users who interacted with item i.
      Pass min_popularity = 1 / (number of training users) to floor unseen items at one user.
    """

    def __init__(self, k: int, n_items: int, item_popularity: np.ndarray, min_popularity: float = 1e-6):
        self.k = _check_k(k)
        self.n_items = int(n_items)
        popularity = np.asarray(item_popularity, dtype=np.float64)
        if popularity.shape != (self.n_items,):
            raise ValueError(f"item_popularity has shape {popularity.shape}, expected ({self.n_items},)")
        if not ((popularity >= 0) & (popularity <= 1)).all():
            raise ValueError("item_popularity must be shares between 0 and 1")
        if not 0 < min_popularity <= 1:
            raise ValueError(f"min_popularity must be in (0, 1], got {min_popularity!r}")
        self._self_information = -np.log2(np.maximum(popularity, min_popularity))
        self._per_user: dict[str, list[np.ndarray]] = {name: [] for name in METRICS}
        # the user index of each evaluated row, when the caller names its users (per_user)
        self._users: list[np.ndarray] | None = []
        # integer counts, so the result does not depend on how the users were chunked
        self._times_recommended = np.zeros(self.n_items, dtype=np.int64)

    def add(
        self,
        scores: np.ndarray,
        positives: sp.csr_matrix,
        exclude: sp.csr_matrix | None = None,
        users: np.ndarray | None = None,
    ) -> None:
        """One chunk of users; `users` (their indices, one per row) lets per_user name them."""
        if np.shape(scores)[-1] != self.n_items:
            raise ValueError(f"scores have {np.shape(scores)[-1]} items, the accumulator {self.n_items}")
        if users is not None and len(users) != np.shape(scores)[0]:
            raise ValueError(f"{len(users)} user indices for {np.shape(scores)[0]} rows of scores")
        metrics = user_metrics(scores, positives, self.k, exclude)
        evaluated = ~np.isnan(metrics["precision"])
        for name in METRICS:
            self._per_user[name].append(metrics[name][evaluated])
        if users is None:
            self._users = None  # a chunk without names: per-user values cannot be attributed
        elif self._users is not None:
            self._users.append(np.asarray(users, dtype=np.int64)[evaluated])
        recommended = metrics["top"][evaluated]
        self._times_recommended += np.bincount(recommended[recommended >= 0], minlength=self.n_items)

    def per_user(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(user indices, values) of one metric (precision, recall, ndcg, ap or auc) for every
        evaluated user, in the order they were added; AUC may be NaN for a user (see user_metrics).
        Needs every chunk added with its `users`."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        if self._users is None:
            raise ValueError("per_user needs the user indices of every chunk: pass users= to add()")
        users = np.concatenate(self._users) if self._users else np.empty(0, dtype=np.int64)
        values = np.concatenate(self._per_user[metric]) if self._per_user[metric] else np.empty(0)
        return users, values

    def result(self) -> dict[str, float]:
        k = self.k
        slots = int(self._times_recommended.sum())
        novelty = float(self._times_recommended @ self._self_information / slots) if slots else float("nan")
        return {
            f"precision_at_{k}": _mean(self._per_user["precision"]),
            f"recall_at_{k}": _mean(self._per_user["recall"]),
            f"ndcg_at_{k}": _mean(self._per_user["ndcg"]),
            f"map_at_{k}": _mean(self._per_user["ap"]),
            "auc": _mean(self._per_user["auc"]),
            f"coverage_at_{k}": float((self._times_recommended > 0).sum() / self.n_items),
            f"novelty_at_{k}": novelty,
            "users": int(sum(len(v) for v in self._per_user["precision"])),
        }
