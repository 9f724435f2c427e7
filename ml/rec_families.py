"""Learned collaborative-filtering families beside the LightFM hybrid: EASE and implicit ALS.

Both follow the scorer interface of `ml.rec_baselines` (built from training interactions with
integer `u` / `i`, called with user indices, returning a dense float64 users x items matrix, higher
is better), so the evaluation, the promotion gate and the published lists treat every family alike.

- **EASE** (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): the item x item
  weights B minimise ||X - XB||^2 + lambda ||B||^2 with diag(B) = 0, in closed form:
  P = (X'X + lambda I)^-1, B = -P / diag(P), diag(B) = 0; score(u) = X[u] B. The Gram matrix is
  dense (n x n float32), inverted in place by a Cholesky factorisation, so memory is one n x n
  float32 array plus the sparse X: 1.6 GB at 20,000 items. Above `max_items` items EASE is fitted
  on the `max_items` items with most distinct users (the items a list is made of) and every other
  item is ranked after them by popularity: the documented fallback, never a silent failure.
- **ALS** (Hu, Koren, Volinsky 2008, through PyPI `implicit`): user and item factors from the
  confidence-weighted binary matrix, score = user factors . item factors. One thread by default,
  so the same data and seed give the same model.

A user without a training interaction has nothing for either family to work from: their row is
MostPopular scaled into [-1, 0) (as ItemItemCooccurrence does), so every row is a full ranking.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from ml.rec_baselines import MostPopular, RecentlyPopular, _user_item_matrix, decay_weight

# Items EASE inverts at most: a 20,000 x 20,000 float32 Gram matrix is 1.6 GB (issue 37's bound
# is 2 GB at 20k items).
EASE_MAX_ITEMS = 20_000


def _popularity_fallback(train: pd.DataFrame, n_items: int) -> np.ndarray:
    """MostPopular scaled into [-1, 0): below any real score of a family that scores >= 0, and a
    full ranking for a user with no history."""
    popularity = MostPopular(train, n_items).scores
    return popularity / (popularity.max(initial=0.0) + 1.0) - 1.0


def _distinct_users(x: sp.csr_matrix) -> np.ndarray:
    return np.diff(x.tocsc().indptr)


def _mirror_lower(m: np.ndarray, block: int = 1024) -> None:
    """Copy the lower triangle of square `m` onto its upper triangle, in place, a block of rows
    at a time (a fancy-indexed copy of a triangle would take several times m's memory)."""
    n = m.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        m[start:stop, stop:] = m[stop:, start:stop].T
        diagonal_block = m[start:stop, start:stop]
        diagonal_block[...] = np.tril(diagonal_block) + np.tril(diagonal_block, -1).T


def _dense_gram(x: sp.csr_matrix, block_cells: int = 2**24) -> np.ndarray:
    """X'X as a dense float32 n x n array, built a block of columns at a time: the sparse product
    of a whole catalogue can hold most of the n^2 pairs (it took 3.3 GB at 20,000 items where the
    dense result is 1.6 GB); a block's holds at most `block_cells`."""
    n = x.shape[1]
    xt = x.T.tocsr().astype(np.float32)
    xc = x.tocsc().astype(np.float32)
    gram = np.empty((n, n), dtype=np.float32)
    step = max(1, block_cells // max(n, 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        gram[:, start:stop] = (xt @ xc[:, start:stop]).toarray()
    return gram


def ease_weights(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """B (items x items, float32, zero diagonal) of EASE on the user x item matrix x.

    The Gram matrix X'X + lam I is built dense in float32 and overwritten by its inverse (LAPACK
    potrf + potri on the lower triangle), then by B: one n x n array in memory at any time."""
    if lam <= 0:
        raise ValueError(f"EASE lambda must be positive, got {lam!r}")
    n = x.shape[1]
    gram = _dense_gram(x)
    gram[np.diag_indices(n)] += np.float32(lam)
    # gram is symmetric, so its transpose is the same matrix in Fortran order: LAPACK then works
    # on this memory instead of a copy
    factor, info = scipy.linalg.lapack.spotrf(gram.T, lower=1, overwrite_a=1, clean=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: X'X + {lam} I is not positive definite (potrf info {info})")
    inverse, info = scipy.linalg.lapack.spotri(factor, lower=1, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: inverting X'X + {lam} I failed (potri info {info})")
    _mirror_lower(inverse)
    # LAPACK left the inverse in Fortran order; it is symmetric, so its transpose is the same
    # matrix in C order. Scoring multiplies sparse rows by it: scipy copies a Fortran-ordered
    # operand to C order on every product (1.6 GB a chunk at 20,000 items)
    inverse = inverse.T
    diagonal = inverse.diagonal().copy()
    inverse /= -diagonal[None, :]
    inverse[np.diag_indices(n)] = 0.0
    return inverse


class EASE:
    """EASE on the binary (or type-weighted) user x item matrix; see the module docstring.

    `max_items`: above this many items, EASE is fitted on the most-used `max_items` items and the
    rest rank after them by popularity (`self.fitted_items` says how many were fitted)."""

    def __init__(
        self,
        train: pd.DataFrame,
        n_users: int,
        n_items: int,
        lam: float = 500.0,
        weights: dict[str, float] | None = None,
        max_items: int = EASE_MAX_ITEMS,
    ):
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items!r}")
        x = _user_item_matrix(train, n_users, n_items, weights)
        users = _distinct_users(x)
        if n_items > max_items:
            # the most-used items, ties to the lower index
            keep = np.sort(np.lexsort((np.arange(n_items), -users))[:max_items])
        else:
            keep = np.arange(n_items)
        self.items = keep
        self.fitted_items = len(keep)
        # float32 as the weights: a float64 sparse operand makes scipy copy the dense weights to
        # float64 on every product (3.2 GB at 20,000 items), which made scoring 50x slower
        self.user_items = x[:, keep].tocsr().astype(np.float32)
        self.weights = ease_weights(self.user_items, lam)
        self.has_history = np.diff(x.indptr) > 0
        self.fallback = _popularity_fallback(train, n_items)
        self.n_items = n_items

    def __call__(self, user_idx: np.ndarray) -> np.ndarray:
        user_idx = np.asarray(user_idx)
        scores = np.tile(self.fallback, (len(user_idx), 1))
        ease = self.user_items[user_idx] @ self.weights  # float32, users x fitted items
        # above the fallback: fitted items of a user with history score from EASE, offset so the
        # lowest EASE score still ranks above every popularity fallback (which is in [-1, 0))
        rows = self.has_history[user_idx]
        if rows.any():
            block = ease[rows].astype(np.float64)
            block -= block.min(axis=1, keepdims=True)
            scores[np.ix_(np.flatnonzero(rows), self.items)] = block
        return scores


class ALS:
    """implicit's alternating least squares on alpha x the binary (or type-weighted) matrix."""

    def __init__(
        self,
        train: pd.DataFrame,
        n_users: int,
        n_items: int,
        factors: int = 32,
        regularization: float = 0.05,
        alpha: float = 1.0,
        iterations: int = 15,
        weights: dict[str, float] | None = None,
        seed: int = 42,
        num_threads: int = 1,
    ):
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        x = _user_item_matrix(train, n_users, n_items, weights).astype(np.float32)
        # implicit warns (and runs slower) when BLAS is multithreaded inside its own threads
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=factors,
                regularization=regularization,
                alpha=alpha,
                iterations=iterations,
                random_state=seed,
                num_threads=num_threads,
                calculate_training_loss=False,
            )
            model.fit(x, show_progress=False)
        self.model = model
        self.user_factors = np.asarray(model.user_factors, dtype=np.float64)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float64)
        self.has_history = np.diff(x.indptr) > 0
        self.fallback = _popularity_fallback(train, n_items)

    def __call__(self, user_idx: np.ndarray) -> np.ndarray:
        user_idx = np.asarray(user_idx)
        scores = self.user_factors[user_idx] @ self.item_factors.T
        rows = ~self.has_history[user_idx]
        if rows.any():
            scores[rows] = self.fallback[None, :]
        return scores


def recency_history(inter: pd.DataFrame, n_users: int, n_items: int, half_life_days: float) -> sp.csr_matrix:
    """Each (user, item) pair weighted 2 ** (-age / half_life_days) at its latest interaction, age
    from the newest interaction in `inter` (0: no decay), and each user's row scaled to sum to 1:
    what RecentEASE multiplies EASE's weights by, so a customer's latest items lead and a long
    history does not outweigh a short one."""
    if len(inter) == 0:
        return sp.csr_matrix((n_users, n_items), dtype=np.float32)
    age = (inter["occurred_at"].max() - inter["occurred_at"]).dt.total_seconds().to_numpy() / 86400.0
    weight = decay_weight(age, half_life_days) if half_life_days > 0 else np.ones(len(inter))
    latest = (
        pd.DataFrame({"u": inter["u"].to_numpy(), "i": inter["i"].to_numpy(), "w": weight})
        .groupby(["u", "i"], sort=False)["w"]
        .max()
    )
    x = sp.csr_matrix(
        (
            latest.to_numpy(dtype=np.float32),
            (latest.index.get_level_values(0).to_numpy(), latest.index.get_level_values(1).to_numpy()),
        ),
        shape=(n_users, n_items),
    )
    sums = np.asarray(x.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0).astype(np.float32)
    return (sp.diags(inv) @ x).tocsr()


def recent_share(inter: pd.DataFrame, n_items: int, window_days: int) -> np.ndarray:
    """RecentlyPopular's scores scaled to a maximum of 1 (0 for every item without a purchase)."""
    recent = RecentlyPopular(inter, n_items, window_days=window_days).scores
    return (recent / max(float(recent.max(initial=0.0)), 1e-12)).astype(np.float32)


class RecentEASE:
    """EASE made recency-aware, a blend: score = h[u] B + recent_weight * recent, where h[u] is the
    customer's history decayed by `half_life_days` and scaled to sum to 1 (recency_history), and
    recent is RecentlyPopular over `recent_days` scaled to a maximum of 1 (recent_share). B is
    EASE's, from the binary matrix. Customers without history get MostPopular in [-1, 0), as EASE.

    Why: on Online Retail "recently popular" beat every personalised model; EASE alone beat it
    narrowly (P@10 0.0797 vs 0.0779), the blend clearly (docs/recommender.md)."""

    def __init__(
        self,
        train: pd.DataFrame,
        n_users: int,
        n_items: int,
        lam: float = 500.0,
        half_life_days: float = 30.0,
        recent_weight: float = 0.01,
        recent_days: int = 14,
        max_items: int = EASE_MAX_ITEMS,
    ):
        if recent_weight < 0:
            raise ValueError(f"recent_weight must not be negative, got {recent_weight!r}")
        self.ease = EASE(train, n_users, n_items, lam=lam, max_items=max_items)
        self.items, self.weights, self.fallback = self.ease.items, self.ease.weights, self.ease.fallback
        self.history = recency_history(train, n_users, n_items, half_life_days)[:, self.items].tocsr()
        self.recent = recent_share(train, n_items, recent_days)
        self.half_life_days, self.recent_weight, self.recent_days = half_life_days, recent_weight, recent_days
        self.has_history = self.ease.has_history

    def __call__(self, user_idx: np.ndarray) -> np.ndarray:
        user_idx = np.asarray(user_idx)
        scores = np.tile(self.fallback, (len(user_idx), 1))
        rows = self.has_history[user_idx]
        if rows.any():
            block = (self.history[user_idx[rows]] @ self.weights).astype(np.float64)
            block += self.recent_weight * self.recent[self.items][None, :]
            block -= block.min(axis=1, keepdims=True)
            scores[np.ix_(np.flatnonzero(rows), self.items)] = block
        return scores


# --- publishing: the families a shop's lists can come from ------------------------------------

# the families the pipeline can train, register and publish lists from (RecommenderParams.family)
PUBLISHABLE = ("lightfm_hybrid", "ease", "ease_recent", "als")


@dataclass
class LinearScores:
    """What `ml.recommender.recommend` ranks with: score(u, i) = user_emb[u] . item_emb_t[:, i] +
    item_bias[i] + user_bias[u]. LightFM's scorer has this shape; ALS is the same with zero biases,
    and EASE with the users' history rows (sparse) as user_emb and B as item_emb_t."""

    user_emb: np.ndarray | sp.csr_matrix
    item_emb_t: np.ndarray
    item_bias: np.ndarray
    user_bias: np.ndarray


def history_matrix(inter: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """The binary user x item matrix EASE and ALS read, from interactions with u / i indices."""
    return _user_item_matrix(inter, n_users, n_items, None).astype(np.float32)


def ease_scores(bundle: dict, history: sp.csr_matrix) -> LinearScores:
    """EASE's published scores for the users of `history` (rows: users, columns: the bundle's
    items). Items EASE did not fit (above its item limit) rank after every fitted one, among
    themselves by the bundle's popularity."""
    fitted, n_items = bundle["fitted_items"], history.shape[1]
    weights = bundle["weights"]
    if len(fitted) < n_items:
        expanded = np.zeros((len(fitted), n_items), dtype=np.float32)
        expanded[:, fitted] = weights
        weights = expanded
    item_bias = np.zeros(n_items, dtype=np.float32)
    others = np.ones(n_items, dtype=bool)
    others[fitted] = False
    # far below any EASE score (|X B| is at most a user's item count), ordered by popularity
    item_bias[others] = np.float32(-1e6) + bundle["fallback"][others].astype(np.float32)
    return LinearScores(history[:, fitted].tocsr(), weights, item_bias, np.zeros(history.shape[0], dtype=np.float32))


def als_scores(bundle: dict, history: sp.csr_matrix) -> LinearScores:
    """ALS's published scores: each user's factors solved from today's history against the
    trained item factors (one least-squares step, as implicit's recalculate_user), so purchases
    made since training count and no customer's trained factors are kept in the bundle."""
    model = bundle["model"]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        users = np.asarray(model.recalculate_user(np.arange(history.shape[0]), history), dtype=np.float32)
    items = np.asarray(model.item_factors, dtype=np.float32)
    return LinearScores(
        users, np.ascontiguousarray(items.T), np.zeros(len(items), np.float32), np.zeros(len(users), np.float32)
    )


def family_bundle(family: str, model, item_ids: list[str], k: int) -> dict:
    """The registered artifact of an EASE or ALS model: item-side state only (EASE's weights, ALS's
    item factors), so a bundle holds no customer's key or row; lists are scored from each
    customer's history at the time (ease_scores, als_scores)."""
    if family == "ease":
        return {
            "family": "ease",
            "item_ids": item_ids,
            "fitted_items": model.items,
            "weights": model.weights,
            "fallback": model.fallback,
            "k": k,
        }
    if family == "ease_recent":
        return {
            "family": "ease_recent",
            "item_ids": item_ids,
            "fitted_items": model.items,
            "weights": model.weights,
            "fallback": model.fallback,
            "half_life_days": model.half_life_days,
            "recent_weight": model.recent_weight,
            "recent_days": model.recent_days,
            "recent": model.recent,  # at training: what the pyfunc adds (it gets no timestamps)
            "k": k,
        }
    if family == "als":
        trained = copy.copy(model.model)
        trained.user_factors = np.zeros((0, trained.factors), dtype=np.float32)  # no customer's factors
        return {"family": "als", "item_ids": item_ids, "model": trained, "k": k}
    raise ValueError(f"no bundle for family {family!r}; EASE and ALS only (LightFM: ml.rec_lists.model_bundle)")


def family_history(bundle: dict, inter: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """The history matrix a family scores from: binary, or for ease_recent decayed and scaled."""
    if bundle["family"] == "ease_recent":
        return recency_history(inter, n_users, n_items, bundle["half_life_days"])
    return history_matrix(inter, n_users, n_items)


def family_scores(bundle: dict, history: sp.csr_matrix, inter: pd.DataFrame | None = None) -> LinearScores:
    """A bundle's scores for the users of `history` (family_history). ease_recent adds today's
    recently-popular share, from `inter` (the interactions `history` came from), or without them
    the one of training time."""
    if bundle["family"] == "ease_recent":
        scores = ease_scores(bundle, history)
        n_items = history.shape[1]
        recent = bundle["recent"] if inter is None else recent_share(inter, n_items, bundle["recent_days"])
        scores.item_bias += np.float32(bundle["recent_weight"]) * recent
        return scores
    return {"ease": ease_scores, "als": als_scores}[bundle["family"]](bundle, history)


def fit_family(data, params):
    """The published model of `params.family` on all of `data`'s interactions: a LightFM model
    (data carries the feature weighting already), or an EASE / ALS scorer."""
    from ml.recommender import fit

    if params.family == "lightfm_hybrid":
        return fit(data, data.interactions, params)
    if params.family in ("ease", "ease_recent", "als"):
        return fit_scorer(params.family, data.interactions, len(data.users.ids), len(data.items.ids), params)
    raise ValueError(f"family {params.family!r} cannot be published; publishable: {', '.join(PUBLISHABLE)}")


def fit_scorer(family: str, inter: pd.DataFrame, n_users: int, n_items: int, params) -> EASE | RecentEASE | ALS:
    """EASE, RecentEASE or ALS with `params`' settings on the interactions `inter` (u / i indices)."""
    if family == "ease":
        return EASE(inter, n_users, n_items, lam=params.ease_lambda, max_items=params.ease_max_items)
    if family == "ease_recent":
        return RecentEASE(
            inter,
            n_users,
            n_items,
            lam=params.ease_lambda,
            half_life_days=params.ease_half_life_days,
            recent_weight=params.ease_recent_weight,
            recent_days=params.recent_days,
            max_items=params.ease_max_items,
        )
    return ALS(
        inter,
        n_users,
        n_items,
        factors=params.als_factors,
        regularization=params.als_regularization,
        alpha=params.als_alpha,
        iterations=params.als_iterations,
        seed=params.seed,
    )
