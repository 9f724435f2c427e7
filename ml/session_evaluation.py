"""Session-split evaluation of session recommenders (ml/sessions.py).

The split is by time over whole sessions: sessions ordered by start (ties by session order), the
last `test_share` of them (or those starting in the last `test_days` days) are held out; models
are fitted on the others. A held-out session's items that never occur in training cannot be
recommended: they are removed from it (and counted), as in session-rec (Ludewig & Jannach
2018), and only held-out sessions left with at least two items are evaluated.

Two protocols on the held-out sessions:

- last item: given all items but the last, predict the last (one case per session);
- remaining items: for each prefix length n = 1 .. min(L - 1, max_given), given the first n
  items, predict the rest of the session (one case per prefix; recall = hits / items left).

Metrics at k per case, averaged over cases: recall (hits / targets), hit rate (any hit), MRR
(1 / rank of the first hit, 0 without), NDCG (ideal: min(targets, k) hits first); coverage is
the share of the catalogue recommended in any case's top k.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ml.rec_metrics import top_k
from ml.sessions import DEFAULT_CHUNK, SessionModel, Sessions

DEFAULT_TEST_SHARE = 0.1
DEFAULT_MAX_GIVEN = 10
PROTOCOLS = ("last_item", "remaining_items")


@dataclass(frozen=True)
class Split:
    train: Sessions
    test: Sessions  # over the training vocabulary: unknown items removed, sessions of >= 2 items
    held_out_sessions: int  # before dropping short ones
    unknown_item_events: int  # held-out (session, item) entries whose item is not in training
    short_sessions_dropped: int  # held-out sessions with fewer than 2 known items


def split_by_time(
    sessions: Sessions, test_share: float | None = DEFAULT_TEST_SHARE, test_days: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of `sessions` (ordered by start): the last test_share of the
    sessions, or those starting within test_days of the latest start (exactly one of the two)."""
    if (test_share is None) == (test_days is None):
        raise ValueError("give exactly one of test_share and test_days")
    n = sessions.n_sessions
    order = np.lexsort((np.arange(n), sessions.starts))
    if test_share is not None:
        if not 0 < test_share < 1:
            raise ValueError(f"test_share must lie in (0, 1), got {test_share!r}")
        n_test = int(np.ceil(n * test_share))
        return np.sort(order[: n - n_test]), np.sort(order[n - n_test :])
    if test_days <= 0:
        raise ValueError(f"test_days must be above 0, got {test_days!r}")
    # starts are epoch microseconds (sessions_from_events' callers cast datetimes so)
    cutoff = sessions.starts.max() - int(test_days * 86_400 * 1_000_000)
    test = sessions.starts > cutoff
    return np.flatnonzero(~test), np.flatnonzero(test)


def restrict_to_items(sessions: Sessions, keep: np.ndarray) -> tuple[Sessions, int]:
    """The sessions without the items where `keep` is False, positions renumbered 1..n; the
    number of (session, item) entries removed."""
    positions = sessions.positions.tocsr().copy()
    positions.sort_indices()
    rows = np.repeat(np.arange(positions.shape[0]), np.diff(positions.indptr))
    kept = keep[positions.indices]
    rows, cols, pos = rows[kept], positions.indices[kept], positions.data[kept]
    # renumber: order by (row, old position), rank within row
    order = np.lexsort((pos, rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, rows)
    new = (np.arange(len(rows)) - starts + 1).astype(np.float64)
    matrix = sp.csr_matrix((new, (rows, cols)), shape=positions.shape)
    return Sessions(matrix, sessions.starts, sessions.items, sessions.ids), int((~kept).sum())


def make_split(
    sessions: Sessions, test_share: float | None = DEFAULT_TEST_SHARE, test_days: float | None = None
) -> Split:
    """Train on the earlier sessions; the held-out ones over the training vocabulary."""
    train_rows, test_rows = split_by_time(sessions, test_share, test_days)
    train = sessions.subset(train_rows)
    known = np.asarray(train.positions.getnnz(axis=0)).ravel() > 0
    test, unknown = restrict_to_items(sessions.subset(test_rows), known)
    long_enough = test.lengths >= 2
    return Split(
        train,
        test.subset(np.flatnonzero(long_enough)),
        held_out_sessions=len(test_rows),
        unknown_item_events=unknown,
        short_sessions_dropped=int((~long_enough).sum()),
    )


@dataclass(frozen=True)
class Cases:
    """Evaluation cases: queries (positions, as ml.sessions) and their target items (binary)."""

    queries: sp.csr_matrix
    targets: sp.csr_matrix
    sessions: np.ndarray  # the held-out session row of each case


def _entries(test: Sessions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = test.positions.tocsr()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return rows, m.indices.astype(np.int64), m.data.astype(np.int64)


def last_item_cases(test: Sessions) -> Cases:
    """Given all items but the last, the last (sessions of >= 2 items)."""
    rows, cols, pos = _entries(test)
    length = test.lengths[rows]
    given = pos < length
    shape = (test.n_sessions, test.n_items)
    queries = sp.csr_matrix((pos[given].astype(np.float64), (rows[given], cols[given])), shape=shape)
    targets = sp.csr_matrix((np.ones((~given).sum()), (rows[~given], cols[~given])), shape=shape)
    return Cases(queries, targets, np.arange(test.n_sessions))


def remaining_items_cases(test: Sessions, max_given: int = DEFAULT_MAX_GIVEN) -> Cases:
    """For each prefix length n = 1 .. min(L - 1, max_given): the first n items, and the rest."""
    if max_given < 1:
        raise ValueError(f"max_given must be at least 1, got {max_given!r}")
    prefixes = np.minimum(test.lengths - 1, max_given)  # cases per session
    case_session = np.repeat(np.arange(test.n_sessions), prefixes)
    case_n = np.arange(len(case_session)) - np.repeat(np.cumsum(prefixes) - prefixes, prefixes) + 1
    rows, cols, pos = _entries(test)
    # every (case, entry of its session): entries of session s are repeated for each of its cases
    per_session = np.bincount(rows, minlength=test.n_sessions)
    entry_start = np.cumsum(per_session) - per_session
    pairs_per_case = per_session[case_session]
    case_of_pair = np.repeat(np.arange(len(case_session)), pairs_per_case)
    entry = entry_start[case_session][case_of_pair] + (
        np.arange(len(case_of_pair)) - np.repeat(np.cumsum(pairs_per_case) - pairs_per_case, pairs_per_case)
    )
    given = pos[entry] <= case_n[case_of_pair]
    shape = (len(case_session), test.n_items)
    queries = sp.csr_matrix(
        (pos[entry][given].astype(np.float64), (case_of_pair[given], cols[entry][given])), shape=shape
    )
    targets = sp.csr_matrix((np.ones((~given).sum()), (case_of_pair[~given], cols[entry][~given])), shape=shape)
    return Cases(queries, targets, case_session)


def make_cases(test: Sessions, protocol: str, max_given: int = DEFAULT_MAX_GIVEN) -> Cases:
    if protocol == "last_item":
        return last_item_cases(test)
    if protocol == "remaining_items":
        return remaining_items_cases(test, max_given)
    raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def case_metrics(top: np.ndarray, targets: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Per case recall, hit rate, MRR and NDCG of the top-k item indices (-1 = empty slot)."""
    k = top.shape[1]
    dense = targets.toarray() != 0
    filled = top >= 0
    hit = np.take_along_axis(dense, np.where(filled, top, 0), axis=1) & filled
    n_targets = dense.sum(axis=1)
    hits = hit.sum(axis=1)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.concatenate(([0.0], np.cumsum(discount)))[np.minimum(n_targets, k)]
    safe = np.maximum(n_targets, 1)
    return {
        "recall": hits / safe,
        "hit_rate": (hits > 0).astype(np.float64),
        "mrr": np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0),
        "ndcg": (hit @ discount) / np.where(ideal > 0, ideal, 1.0),
    }


def evaluate(model: SessionModel, cases: Cases, k: int = 10, chunk: int = DEFAULT_CHUNK) -> dict:
    """Mean metrics at k over the cases (every case has at least one target), coverage, and the
    scoring time per case."""
    sums = {"recall": 0.0, "hit_rate": 0.0, "mrr": 0.0, "ndcg": 0.0}
    recommended = np.zeros(model.n_items, dtype=bool)
    started = time.perf_counter()
    for start, scores in model.score_chunks(cases.queries, chunk):
        top = top_k(scores, k)
        recommended[top[top >= 0]] = True
        for name, values in case_metrics(top, cases.targets[start : start + len(scores)]).items():
            sums[name] += float(values.sum())
    seconds = time.perf_counter() - started
    n = cases.queries.shape[0]
    out = {f"{name}_at_{k}": (value / n if n else float("nan")) for name, value in sums.items()}
    out[f"coverage_at_{k}"] = float(recommended.mean()) if model.n_items else float("nan")
    out["cases"] = int(n)
    out["ms_per_case"] = 1000 * seconds / n if n else float("nan")
    return out


def split_summary(split: Split) -> dict:
    return {
        "train_sessions": split.train.n_sessions,
        "train_items": int((split.train.positions.getnnz(axis=0) > 0).sum()),
        "train_entries": int(split.train.positions.nnz),
        "held_out_sessions": split.held_out_sessions,
        "test_sessions": split.test.n_sessions,
        "unknown_item_entries_removed": split.unknown_item_events,
        "short_sessions_dropped": split.short_sessions_dropped,
    }
