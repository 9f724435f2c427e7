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

from ml.rec_baselines import MostPopular, _user_item_matrix

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
        self.user_items = x[:, keep].tocsr()
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


# --- publishing: the families a shop's lists can come from ------------------------------------

# the families the pipeline can train, register and publish lists from (RecommenderParams.family)
PUBLISHABLE = ("lightfm_hybrid", "ease", "als")


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
    if family == "als":
        trained = copy.copy(model.model)
        trained.user_factors = np.zeros((0, trained.factors), dtype=np.float32)  # no customer's factors
        return {"family": "als", "item_ids": item_ids, "model": trained, "k": k}
    raise ValueError(f"no bundle for family {family!r}; EASE and ALS only (LightFM: ml.rec_lists.model_bundle)")


def family_scores(bundle: dict, history: sp.csr_matrix) -> LinearScores:
    return {"ease": ease_scores, "als": als_scores}[bundle["family"]](bundle, history)


def fit_family(data, params):
    """The published model of `params.family` on all of `data`'s interactions: a LightFM model
    (data carries the feature weighting already), or an EASE / ALS scorer."""
    from ml.recommender import fit

    if params.family == "lightfm_hybrid":
        return fit(data, data.interactions, params)
    if params.family in ("ease", "als"):
        return fit_scorer(params.family, data.interactions, len(data.users.ids), len(data.items.ids), params)
    raise ValueError(f"family {params.family!r} cannot be published; publishable: {', '.join(PUBLISHABLE)}")


def fit_scorer(family: str, inter: pd.DataFrame, n_users: int, n_items: int, params) -> EASE | ALS:
    """EASE or ALS with `params`' settings on the interactions `inter` (u / i indices)."""
    if family == "ease":
        return EASE(inter, n_users, n_items, lam=params.ease_lambda, max_items=params.ease_max_items)
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
