"""Session-based recommendation: the next items of an anonymous visit from its recent items.

A session is the ordered list of distinct items a visitor touched (a basket, or the products of
one web visit); repeats keep their first position. Models are fitted on training sessions and
score a *query*, the items of the current session so far (most recent last). Every model here
is plain numpy/scipy, vectorised over the sessions and items of a chunk of queries:

- `Popularity`: the number of training sessions holding the item.
- `ItemItem`: item-to-item co-occurrence, cosine-normalised (co-sessions / sqrt(n_i n_j)),
  summed over the query's items: the baseline a session model must beat.
- `SKNN` (Jannach & Ludewig 2017, "When recurrent neural networks meet the neighborhood for
  session-based recommendation"): the training sessions that share an item with the query, the
  `sample_size` most recent of them, then the `k` most similar by cosine on binary item sets;
  an item scores the sum of the similarities of the neighbours that hold it.
- `VSKNN` (Ludewig & Jannach 2018, "Evaluation of session-based recommendation algorithms",
  the `vmsknn` of their session-rec framework): the query's items weighted by position
  (`div`: p / n, so the last item weighs 1 and the first 1 / n), similarity = the summed
  weights of the shared items / n; each neighbour's contribution divided by how far back its
  most recent shared item lies (1 for the last item, 1/2 for the one before ...); optional IDF
  weighting multiplies an item's score by (1 + idf_weight * log(N / n_i)).

Items already in the query are never recommended (score -inf): the data are deduplicated per
session, so a repeat cannot be a target. Scores are deterministic; ties are broken by the lower
item index (ml.rec_metrics.top_k), neighbour ties by the more recent session, then the lower
session index. Defaults are the literature's: k = 100 neighbours from a sample of the 500 most
recent sessions (Ludewig & Jannach 2018 tuned k in 50..500 and sample sizes 500..10,000 per
dataset).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from ml.rec_metrics import top_k

try:  # the C routines behind scipy's sparse row indexing and products (_rows_weighted_sum)
    from scipy.sparse import _sparsetools as _SPARSETOOLS
except ImportError:  # pragma: no cover - a scipy without it: the public path
    _SPARSETOOLS = None

log = logging.getLogger("ml.sessions")

DEFAULT_K = 100
DEFAULT_SAMPLE_SIZE = 500
WEIGHTINGS = ("div", "same")
DEFAULT_CHUNK = 512


@dataclass(frozen=True)
class Sessions:
    """Sessions as sparse matrices over an item vocabulary.

    positions: sessions x items, the 1-based position of each item in its session (first
    occurrence), no entry for absent items. starts: each session's start (int64, e.g. epoch
    microseconds), for recency. items: the item id of each column. ids: each session's id."""

    positions: sp.csr_matrix
    starts: np.ndarray
    items: np.ndarray
    ids: np.ndarray

    @property
    def n_sessions(self) -> int:
        return self.positions.shape[0]

    @property
    def n_items(self) -> int:
        return self.positions.shape[1]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.positions.indptr)

    def subset(self, rows: np.ndarray) -> Sessions:
        return Sessions(self.positions[rows], self.starts[rows], self.items, self.ids[rows])

    def binary(self) -> sp.csr_matrix:
        out = self.positions.copy()
        out.data = np.ones_like(out.data, dtype=np.float64)
        return out


def sessions_from_events(
    events: pl.DataFrame, session: str, item: str, time: str, items: np.ndarray | None = None
) -> Sessions:
    """Sessions from one row per event. Events are ordered by (session, time, row order); a
    session's items keep their first occurrence; its start is its first event's time.

    `items` fixes the vocabulary (the columns): events of other items are dropped. By default the
    vocabulary is every item seen, sorted (so the result does not depend on row order beyond the
    order inside sessions)."""
    missing = [c for c in (session, item, time) if c not in events.columns]
    if missing:
        raise ValueError(f"events lack the column(s) {missing}; they have {events.columns}")
    frame = events.select(
        pl.col(session).cast(pl.String).alias("session"),
        pl.col(item).cast(pl.String).alias("item"),
        pl.col(time).cast(pl.Int64).alias("time"),
    ).with_row_index("row")
    nulls = frame.filter(pl.any_horizontal(pl.col("session", "item", "time").is_null())).height
    if nulls:
        raise ValueError(f"{nulls} event(s) have a null {session}, {item} or {time}")
    if items is None:
        items = np.sort(frame["item"].unique().to_numpy()).astype(str)
    vocab = pl.DataFrame({"item": pl.Series(items, dtype=pl.String)}).with_row_index("col")
    ordered = (
        frame.join(vocab, on="item", how="inner")
        .sort("session", "time", "row")
        .unique(["session", "item"], keep="first", maintain_order=True)
    )
    starts = frame.group_by("session").agg(pl.col("time").min().alias("start")).sort("start", "session")
    if ordered.height == 0 or starts.height == 0:
        empty = sp.csr_matrix((0, len(items)), dtype=np.float64)
        return Sessions(empty, np.empty(0, dtype=np.int64), np.asarray(items), np.empty(0, dtype=str))
    # sessions are numbered by start, so row order is time order
    starts = starts.filter(pl.col("session").is_in(ordered["session"].implode())).with_row_index("srow")
    ordered = ordered.join(starts.select("session", "srow"), on="session").sort("srow", "time", "row")
    ordered = ordered.with_columns(position=pl.int_range(1, pl.len() + 1).over("srow"))
    positions = sp.csr_matrix(
        (
            ordered["position"].to_numpy().astype(np.float64),
            (ordered["srow"].to_numpy(), ordered["col"].to_numpy()),
        ),
        shape=(starts.height, len(items)),
    )
    return Sessions(positions, starts["start"].to_numpy(), np.asarray(items), starts["session"].to_numpy())


def query_matrix(item_lists: list[list[int]], n_items: int) -> sp.csr_matrix:
    """Queries (one list of item indices per query, most recent last, repeats keep their first
    position) as a positions matrix, for scoring outside `Sessions`."""
    lengths = np.array([len(x) for x in item_lists], dtype=np.int64)
    flat = np.fromiter((i for x in item_lists for i in x), dtype=np.int64, count=int(lengths.sum()))
    row = np.repeat(np.arange(len(item_lists)), lengths)
    if flat.size and (flat.min() < 0 or flat.max() >= n_items):
        raise ValueError(f"item indices must lie in [0, {n_items})")
    # first occurrence per (row, item): unique on the pair keeps the first index
    _, first = np.unique(row * n_items + flat, return_index=True)
    first.sort()
    row, flat = row[first], flat[first]
    starts = np.searchsorted(row, np.arange(len(item_lists)))
    position = np.arange(len(row)) - starts[row] + 1
    return sp.csr_matrix((position.astype(np.float64), (row, flat)), shape=(len(item_lists), n_items))


def _row_ids(matrix: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))


def _first_per_row(rows: np.ndarray, order_keys: tuple[np.ndarray, ...], limit: int) -> np.ndarray:
    """Indices of the first `limit` entries of each row, entries sorted by `order_keys` (last key
    most significant, as np.lexsort) within `rows` (which must be the most significant key)."""
    order = np.lexsort((*order_keys, rows))
    sorted_rows = rows[order]
    starts = np.searchsorted(sorted_rows, sorted_rows, side="left")
    rank = np.arange(len(order)) - starts
    return order[rank < limit]


def _exclude_query_items(scores: np.ndarray, queries: sp.csr_matrix) -> np.ndarray:
    scores[_row_ids(queries), queries.indices] = -np.inf
    return scores


class SessionModel:
    """fit(train) then score(queries) -> dense (queries x items) scores, -inf on the query's items."""

    name = "model"

    def fit(self, train: Sessions) -> SessionModel:
        raise NotImplementedError

    def _score(self, queries: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def params(self) -> dict:
        return {}

    def score(self, queries: sp.csr_matrix) -> np.ndarray:
        queries = sp.csr_matrix(queries)
        if queries.shape[1] != self.n_items:
            raise ValueError(f"queries have {queries.shape[1]} items, the model {self.n_items}")
        return _exclude_query_items(np.asarray(self._score(queries), dtype=np.float64), queries)

    def score_chunks(self, queries: sp.csr_matrix, chunk: int = DEFAULT_CHUNK):
        """(start row, dense scores) per chunk of `chunk` queries: memory O(chunk x items)."""
        for start in range(0, queries.shape[0], chunk):
            yield start, self.score(queries[start : start + chunk])

    def recommend(self, items: list[int], limit: int) -> tuple[np.ndarray, np.ndarray]:
        """One session (item indices, most recent last): the `limit` best item indices and their
        scores, best first, ties by the lower item index; items scored -inf never appear."""
        scores = self.score(query_matrix([list(items)], self.n_items))
        top = top_k(scores, limit)[0]
        top = top[top >= 0]
        return top, scores[0, top]

    def recommend_positive(self, items: list[int], limit: int) -> tuple[np.ndarray, np.ndarray]:
        """recommend()'s items with a positive score: what the visitor route keeps
        (tessera/realtime/visitor_recs.py). VSKNN has a faster path to the same answer."""
        top, scores = self.recommend(items, limit)
        positive = scores > 0
        return top[positive], scores[positive]


class Popularity(SessionModel):
    name = "popularity"

    def fit(self, train: Sessions) -> Popularity:
        self.n_items = train.n_items
        self.counts = np.asarray(train.binary().sum(axis=0)).ravel()
        return self

    def _score(self, queries: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.counts, (queries.shape[0], self.n_items)).copy()


class ItemItem(SessionModel):
    """Cosine co-occurrence: sim(i, j) = sessions holding both / sqrt(n_i n_j), i != j; a query
    scores sum over its items i of sim(i, j)."""

    name = "item_item"

    def fit(self, train: Sessions) -> ItemItem:
        self.n_items = train.n_items
        binary = train.binary()
        co = (binary.T @ binary).tocsr()
        counts = co.diagonal()
        norm = np.sqrt(np.maximum(counts, 1))
        co = sp.diags(1 / norm) @ co @ sp.diags(1 / norm)
        co.setdiag(0)
        co.eliminate_zeros()
        self.similarity = co.tocsr()
        return self

    def _score(self, queries: sp.csr_matrix) -> np.ndarray:
        binary = queries.copy()
        binary.data = np.ones_like(binary.data)
        return (binary @ self.similarity).toarray()


@dataclass
class SKNN(SessionModel):
    """Session-based kNN. k neighbours out of the `sample_size` most recent training sessions
    sharing an item with the query, by cosine on the binary item sets."""

    k: int = DEFAULT_K
    sample_size: int = DEFAULT_SAMPLE_SIZE
    name: str = field(default="sknn", init=False)

    def __post_init__(self):
        for what, value in (("k", self.k), ("sample_size", self.sample_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{what} must be a positive integer, got {value!r}")

    def params(self) -> dict:
        return {"k": self.k, "sample_size": self.sample_size}

    def fit(self, train: Sessions) -> SKNN:
        self.n_items = train.n_items
        self.sessions = train.binary()  # sessions x items
        self.session_items_t = self.sessions.T.tocsr()  # items x sessions
        self.session_lengths = train.lengths.astype(np.float64)
        # recency rank: 0 = the most recent session (train is ordered by start; later rows newer)
        order = np.lexsort((-np.arange(train.n_sessions), -train.starts))
        self.recency = np.empty(train.n_sessions, dtype=np.int64)
        self.recency[order] = np.arange(train.n_sessions)
        self.idf = np.log(max(train.n_sessions, 1) / np.maximum(np.diff(self.session_items_t.indptr), 1))
        return self

    def _query_weights(self, queries: sp.csr_matrix) -> sp.csr_matrix:
        out = queries.copy()
        out.data = np.ones_like(out.data)
        return out

    def _neighbours(self, queries: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query row, training session, similarity) of each query's k neighbours."""
        weighted = self._query_weights(queries)
        shared = (weighted @ self.session_items_t).tocsr()  # queries x sessions, summed weights
        shared.sort_indices()
        rows, cols, overlap = _row_ids(shared), shared.indices, shared.data
        # the sample: the sample_size most recent candidates (recency rank 0 = newest)
        kept = _first_per_row(rows, (self.recency[cols],), self.sample_size)
        rows, cols, overlap = rows[kept], cols[kept], overlap[kept]
        similarity = self._similarity(queries, rows, cols, overlap)
        best = _first_per_row(rows, (self.recency[cols], -similarity), self.k)
        return rows[best], cols[best], similarity[best]

    def _similarity(self, queries, rows, cols, overlap) -> np.ndarray:
        lengths = np.diff(queries.indptr).astype(np.float64)
        return overlap / np.sqrt(lengths[rows] * self.session_lengths[cols])

    def _neighbour_weights(self, queries, rows, cols, similarity) -> np.ndarray:
        return similarity

    def _score(self, queries: sp.csr_matrix) -> np.ndarray:
        rows, cols, similarity = self._neighbours(queries)
        weights = sp.csr_matrix(
            (self._neighbour_weights(queries, rows, cols, similarity), (rows, cols)),
            shape=(queries.shape[0], self.sessions.shape[0]),
        )
        return (weights @ self.sessions).toarray()


@dataclass
class VSKNN(SKNN):
    """Vector multiplication session kNN (session-rec's vmsknn with weighting='div',
    weighting_score='div_score'). idf_weight 0 turns IDF weighting off."""

    weighting: str = "div"
    idf_weight: float = 0.0
    name: str = field(default="vsknn", init=False)

    def __post_init__(self):
        super().__post_init__()
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if not np.isfinite(self.idf_weight) or self.idf_weight < 0:
            raise ValueError(f"idf_weight must be a finite number >= 0, got {self.idf_weight!r}")

    def params(self) -> dict:
        return {**super().params(), "weighting": self.weighting, "idf_weight": self.idf_weight}

    def _query_weights(self, queries: sp.csr_matrix) -> sp.csr_matrix:
        out = queries.copy()
        if self.weighting == "div":
            lengths = np.diff(queries.indptr).astype(np.float64)
            out.data = queries.data / lengths[_row_ids(queries)]
        else:
            out.data = np.ones_like(queries.data)
        return out

    def _similarity(self, queries, rows, cols, overlap) -> np.ndarray:
        lengths = np.diff(queries.indptr).astype(np.float64)
        return overlap / lengths[rows]

    def _neighbour_weights(self, queries, rows, cols, similarity) -> np.ndarray:
        # the position of the most recent query item each neighbour holds: the row-wise max of
        # (query positions) x (neighbour's items), over the k neighbours' pairs only
        shared = queries[rows].multiply(self.sessions[cols]).tocsr()
        latest = shared.max(axis=1).toarray().ravel()
        lengths = np.diff(queries.indptr).astype(np.float64)
        step = lengths[rows] - latest + 1  # 1 = the query's last item
        return similarity / step

    def _score(self, queries: sp.csr_matrix) -> np.ndarray:
        scores = super()._score(queries)
        if self.idf_weight:
            scores *= 1 + self.idf_weight * self.idf
        return scores

    def recommend(self, items: list[int], limit: int) -> tuple[np.ndarray, np.ndarray]:
        """One session, as SessionModel.recommend, without building sparse matrices: the serving
        path (a visitor's request), about five times faster for one query. The same arithmetic in
        the same order as score(), so the same items and the same scores (tests/test_sessions.py
        compares them exactly)."""
        columns = np.fromiter(dict.fromkeys(int(i) for i in items), dtype=np.int64)
        n = len(columns)
        if n == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        if columns.min() < 0 or columns.max() >= self.n_items:
            raise ValueError(f"item indices must lie in [0, {self.n_items})")
        positions = np.arange(1, n + 1, dtype=np.float64)
        weights = positions / n if self.weighting == "div" else np.ones(n)
        # the query's items in column order, as the sparse product adds them up
        by_column = np.argsort(columns, kind="stable")
        sessions, per_item = _gather(self.session_items_t, columns[by_column])
        candidates, inverse = np.unique(sessions, return_inverse=True)
        overlap = np.bincount(inverse, weights=np.repeat(weights[by_column], per_item), minlength=len(candidates))
        latest = np.zeros(len(candidates))
        np.maximum.at(latest, inverse, np.repeat(positions[by_column], per_item))
        recency = self.recency[candidates]
        if len(candidates) > self.sample_size:  # recency ranks are distinct: the sample is exact
            sample = np.sort(np.argpartition(recency, self.sample_size - 1)[: self.sample_size])
            candidates, overlap, latest, recency = candidates[sample], overlap[sample], latest[sample], recency[sample]
        similarity = overlap / n
        best = np.sort(np.lexsort((recency, -similarity))[: self.k])  # back in session order
        neighbours = candidates[best]
        weight = similarity[best] / (n - latest[best] + 1)
        held, per_session = _gather(self.sessions, neighbours)
        scores = np.bincount(held, weights=np.repeat(weight, per_session), minlength=self.n_items)
        if self.idf_weight:
            scores *= 1 + self.idf_weight * self.idf
        scores[columns] = -np.inf
        top = top_k(scores[None, :], limit)[0]
        top = top[top >= 0]
        return top, scores[top]

    def recommend_positive(self, items: list[int], limit: int) -> tuple[np.ndarray, np.ndarray]:
        """recommend()'s items with a positive score, the same items in the same order with the
        same scores (tests/test_sessions.py compares them exactly), in a little over half of its
        time: the visitor route's path (tessera/realtime/visitor_recs.py), which keeps only those.

        What differs is only how the same numbers are reached. The candidates are deduplicated by a
        stable sort (the postings are sorted runs), and a one-item session's are its item's postings
        as they stand (a storefront's first product view); the k best neighbours are chosen by a
        partition at the k-th similarity, its ties resolved by recency (not a full sort); the
        neighbours' rows are summed by _rows_weighted_sum, which adds each neighbour's weight in the
        same order as recommend()'s bincount (neighbours in session order); IDF weights and the top
        are taken over the items with a score only (a partition at the limit-th score, then the few
        left sorted; ties by the lower item index)."""
        columns = np.fromiter(dict.fromkeys(int(i) for i in items), dtype=np.int64)
        n = len(columns)
        if n == 0 or limit < 1:
            return np.empty(0, dtype=np.int64), np.empty(0)
        if columns.min() < 0 or columns.max() >= self.n_items:
            raise ValueError(f"item indices must lie in [0, {self.n_items})")
        positions = np.arange(1, n + 1, dtype=np.float64)
        weights = positions / n if self.weighting == "div" else np.ones(n)
        offsets, postings = self._postings()
        if n == 1:
            # one item: its postings are the candidates (sorted, distinct), each sharing it at
            # position 1; overlap and latest as the general path's sums and maxima give them
            candidates = postings[offsets[columns[0]] : offsets[columns[0] + 1]]
            overlap = np.full(len(candidates), 0.0 + weights[0])
            latest = np.ones(len(candidates))
        else:
            by_column = np.argsort(columns, kind="stable")
            parts = [postings[offsets[c] : offsets[c + 1]] for c in columns[by_column].tolist()]
            sessions, per_item = np.concatenate(parts), [len(p) for p in parts]
            # np.unique(sessions, return_inverse=True), by a stable sort: the postings are sorted runs
            order = np.argsort(sessions, kind="stable")
            ordered = sessions[order]
            first = np.empty(len(ordered), dtype=bool)
            first[:1] = True
            np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
            candidates = ordered[first]
            inverse = np.empty(len(sessions), dtype=np.int64)
            inverse[order] = np.cumsum(first) - 1
            overlap = np.bincount(inverse, weights=np.repeat(weights[by_column], per_item), minlength=len(candidates))
            latest = np.zeros(len(candidates))
            np.maximum.at(latest, inverse, np.repeat(positions[by_column], per_item))
        if len(candidates) > self.sample_size:
            sample = np.sort(np.argpartition(self.recency[candidates], self.sample_size - 1)[: self.sample_size])
            candidates, overlap, latest = candidates[sample], overlap[sample], latest[sample]
        similarity = overlap / n
        if len(candidates) > self.k:
            # the k best by (similarity, then recency): those above the k-th similarity, and of
            # those at it the most recent (recency ranks are distinct, so the choice is exact)
            cut = len(candidates) - self.k
            kth = np.partition(similarity, cut)[cut]
            keep = similarity > kth
            tied = np.flatnonzero(similarity == kth)
            keep[tied[np.argsort(self.recency[candidates[tied]])[: self.k - np.count_nonzero(keep)]]] = True
            candidates, similarity, latest = candidates[keep], similarity[keep], latest[keep]
        weight = similarity / (n - latest + 1)
        scores = _rows_weighted_sum(self.sessions, candidates, weight)
        scores[columns] = 0.0  # the query's own items: never recommended
        top = np.flatnonzero(scores > 0)
        values = scores[top]
        if self.idf_weight:
            values *= 1 + self.idf_weight * self.idf[top]
        if len(top) > limit:
            cut = len(top) - limit
            above = values >= np.partition(values, cut)[cut]
            top, values = top[above], values[above]
        order = np.lexsort((top, -values))[:limit]
        return top[order], values[order]

    def _postings(self) -> tuple[list[int], np.ndarray]:
        """Each item's training sessions for recommend_positive, kept per fit: the offsets as a
        list (slicing with Python ints costs less than with numpy's) and the sessions, sorted."""
        cached = self.__dict__.get("_postings_cache")
        if cached is None or cached[0] is not self.session_items_t:
            if not self.session_items_t.has_sorted_indices:
                self.session_items_t.sort_indices()
            cached = (self.session_items_t, self.session_items_t.indptr.tolist(), self.session_items_t.indices)
            self._postings_cache = cached
        return cached[1], cached[2]


def _rows_weighted_sum(matrix: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum over i of weights[i] * matrix[rows[i]], dense; each column's terms added in the order of
    `rows`, as np.bincount over the rows' entries adds them (VSKNN.recommend).

    It is `matrix[rows].T @ weights`, done by the two C routines scipy runs for it (csr_row_index,
    csc_matvec) without its Python-level checks, which cost as much as the arithmetic for the
    ~60,000 entries of a thousand neighbours (bench/visitor_recs.py). `_sparsetools` is scipy's
    private module: if its routines are missing or refuse the arguments, the public expression is
    used, after one warning."""
    global _SPARSETOOLS
    if _SPARSETOOLS is not None:
        try:
            return _sparsetools_rows_weighted_sum(matrix, rows, weights)
        except (AttributeError, TypeError, ValueError) as exc:
            log.warning("scipy.sparse._sparsetools unusable (%s): the public, slower path is used", exc)
            _SPARSETOOLS = None
    return np.asarray(matrix[rows].T @ weights).ravel()


def _sparsetools_rows_weighted_sum(matrix: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    index_type = matrix.indices.dtype
    rows = rows.astype(index_type, copy=False)
    lengths = matrix.indptr[rows + 1] - matrix.indptr[rows]
    indptr = np.zeros(len(rows) + 1, dtype=index_type)
    np.cumsum(lengths, out=indptr[1:])
    indices, data = np.empty(int(indptr[-1]), dtype=index_type), np.empty(int(indptr[-1]), dtype=matrix.data.dtype)
    _SPARSETOOLS.csr_row_index(len(rows), rows, matrix.indptr, matrix.indices, matrix.data, indices, data)
    out = np.zeros(matrix.shape[1], dtype=np.result_type(matrix.data.dtype, weights.dtype))
    # the selected rows read as the columns of a CSC matrix (columns x rows): out += that @ weights
    _SPARSETOOLS.csc_matvec(matrix.shape[1], len(rows), indptr, indices, data, weights, out)
    return out


def _gather(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The column indices of the given rows of a CSR matrix, concatenated in row order, and the
    number of entries of each row."""
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = ends - starts
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return matrix.indices[offsets + np.arange(lengths.sum())], lengths


METHODS = {"popularity": Popularity, "item_item": ItemItem, "sknn": SKNN, "vsknn": VSKNN}


def make_model(method: str, **params) -> SessionModel:
    if method not in METHODS:
        raise ValueError(f"unknown session method {method!r}; known: {', '.join(METHODS)}")
    return METHODS[method](**params)
