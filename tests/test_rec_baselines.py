"""Baseline scorers: hand-computed popularity, recency and item-item cosine scores and rankings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics.pairwise import cosine_similarity as sklearn_cosine

from ml import rec_baselines
from ml.rec_baselines import (
    ItemItemCooccurrence,
    MostPopular,
    RecentlyPopular,
    cosine_similarity,
    decay_weight,
)

AS_OF = pd.Timestamp("2026-10-31 00:00")


def _frame(rows: list[tuple[int, int, str, float]]) -> pd.DataFrame:
    """(user, item, interaction_type, days before AS_OF) rows as an interactions frame."""
    u, i, kind, days_ago = zip(*rows, strict=False)
    return pd.DataFrame(
        {
            "u": np.array(u, dtype=np.int64),
            "i": np.array(i, dtype=np.int64),
            "interaction_type": list(kind),
            "occurred_at": AS_OF - pd.to_timedelta(np.array(days_ago, dtype=float), unit="D"),
        }
    )


def _ranking(scores: np.ndarray) -> list[int]:
    return np.argsort(-scores, kind="stable").tolist()


def _random_frame(seed: int, n_users: int = 60, n_items: int = 25, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "u": rng.integers(0, n_users, n),
            "i": rng.integers(0, n_items, n),
            "interaction_type": rng.choice(["view", "cart", "purchase"], n, p=[0.6, 0.25, 0.15]),
            "occurred_at": AS_OF - pd.to_timedelta(rng.integers(0, 30 * 24, n), unit="h"),
        }
    )


# --- MostPopular ----------------------------------------------------------------------------

# item 0: bought by u0, viewed by u1           -> 1 buyer, 2 users
# item 1: bought by u0 and u1                  -> 2 buyers, 2 users
# item 2: bought by u2, viewed u3, carted u4   -> 1 buyer, 3 users
# item 3: bought three times by u3, viewed u4  -> 1 buyer (distinct), 2 users
# item 4: viewed by u0, u1, u2, u3             -> 0 buyers, 4 users
POPULARITY = _frame(
    [
        (0, 0, "purchase", 5),
        (1, 0, "view", 5),
        (0, 1, "purchase", 5),
        (1, 1, "purchase", 5),
        (2, 2, "purchase", 5),
        (3, 2, "view", 5),
        (4, 2, "cart", 5),
        (3, 3, "purchase", 5),
        (3, 3, "purchase", 4),
        (3, 3, "purchase", 3),
        (4, 3, "view", 5),
        (0, 4, "view", 5),
        (1, 4, "view", 5),
        (2, 4, "view", 5),
        (3, 4, "view", 5),
    ]
)


def test_most_popular_ranks_by_distinct_buyers_then_users_then_lower_index():
    model = MostPopular(POPULARITY, n_items=5)
    assert model.buyers.tolist() == [1, 2, 1, 1, 0]
    assert model.users.tolist() == [2, 2, 3, 2, 4]
    # position: items sorted by users ascending, equal users with the higher index first:
    # users 2 -> items 3, 1, 0 get positions 0, 1, 2; item 2 (3 users) 3; item 4 (4 users) 4.
    # score = buyers + position / 5
    expected = [1 + 2 / 5, 2 + 1 / 5, 1 + 3 / 5, 1 + 0 / 5, 0 + 4 / 5]
    np.testing.assert_allclose(model.scores, expected, rtol=0, atol=1e-12)
    # 2 buyers first; items 2, 0, 3 tie on 1 buyer: 3 users beats 2, then index 0 before 3;
    # item 4 has the most users but no buyer, so it comes last
    assert _ranking(model.scores) == [1, 2, 0, 3, 4]


def test_most_popular_fraction_never_outranks_one_more_buyer():
    model = MostPopular(POPULARITY, n_items=5)
    np.testing.assert_array_equal(np.floor(model.scores), model.buyers)


def test_most_popular_gives_every_user_the_same_row():
    model = MostPopular(POPULARITY, n_items=5)
    scores = model(np.array([4, 0, 9]))
    np.testing.assert_array_equal(scores, np.tile(model.scores, (3, 1)))


# --- RecentlyPopular ------------------------------------------------------------------------

# window 14 days, half-life 7 days (the default, window / 2), ages from AS_OF (latest event):
# item 0: bought by u0, u1, u2 30 days ago       -> outside the window, recent 0 (3 buyers overall)
# item 1: bought by u3, u4 10.5 days ago         -> 2 * 2**(-10.5 / 7) = 2 * 2**-1.5 = 0.70711
# item 2: bought by u5 now and 7 days ago        -> one pair, at its latest purchase: 2**0 = 1
# item 3: bought by u6 13.5 days ago             -> 2**(-13.5 / 7) = 0.26255
# item 4: bought by u7 20 days ago               -> 0 (1 buyer overall)
# item 5: bought by u8 exactly 14 days ago       -> the window is age < 14: 0 (1 buyer overall)
RECENCY = _frame(
    [
        (0, 0, "purchase", 30),
        (1, 0, "purchase", 30),
        (2, 0, "purchase", 30),
        (3, 1, "purchase", 10.5),
        (4, 1, "purchase", 10.5),
        (5, 2, "purchase", 0),
        (5, 2, "purchase", 7),
        (6, 3, "purchase", 13.5),
        (7, 4, "purchase", 20),
        (8, 5, "purchase", 14),
    ]
)


def test_decay_weight_halves_every_half_life():
    assert decay_weight(0.0, 7) == pytest.approx(1.0)
    assert decay_weight(7.0, 7) == pytest.approx(0.5)
    assert decay_weight(14.0, 7) == pytest.approx(0.25)
    assert decay_weight(3.5, 7) == pytest.approx(2**-0.5)  # 0.70711, not a linear 0.75


def test_recently_popular_sums_decayed_distinct_buyers_in_the_window():
    model = RecentlyPopular(RECENCY, n_items=6, window_days=14)
    assert model.half_life_days == 7
    expected = [0.0, 2 * 2**-1.5, 1.0, 2 ** (-13.5 / 7), 0.0, 0.0]  # see the table above
    np.testing.assert_allclose(model.recent, expected, rtol=1e-12)


def test_recently_popular_prefers_a_newer_item_over_an_older_more_popular_one():
    model = RecentlyPopular(RECENCY, n_items=6, window_days=14)
    # item 2 (1 buyer today, 1.0) beats item 1 (2 buyers 10.5 days ago, 0.707); item 3 (one
    # buyer 13.5 days ago) beats item 0 (3 buyers, all before the window); items 0, 4, 5 have no
    # recent purchase and follow all-time popularity: 3 buyers, then 1 buyer with the lower index.
    assert _ranking(model.scores) == [2, 1, 3, 0, 4, 5]


def test_recently_popular_tie_break_stays_below_the_weakest_recent_purchase():
    model = RecentlyPopular(RECENCY, n_items=6, window_days=14)
    # step = min(2**(-14 / 7) = 0.25, smallest gap between distinct recent values = 0.26255)
    tie_break = model.scores - model.recent
    assert (tie_break >= 0).all() and (tie_break < 0.25).all()
    assert tie_break[0] > tie_break[4] > tie_break[5]  # all-time order: 3 buyers, then index


def test_all_time_popularity_does_not_reorder_close_but_unequal_recent_values():
    # item 0: 1 buyer 7 days ago -> 2**-1 = 0.5; item 1: 1 buyer 7.5 days ago -> 2**(-7.5/7) =
    # 0.47527, plus 3 buyers 30 days ago (all-time leader). The gap 0.0247 is below the weight of a
    # purchase at the window edge (0.25), so a tie-break scaled to 0.25 alone would put item 1
    # first; scaled to the gap it only separates equal values.
    frame = _frame(
        [
            (0, 0, "purchase", 7),
            (1, 1, "purchase", 7.5),
            (2, 1, "purchase", 30),
            (3, 1, "purchase", 30),
            (4, 1, "purchase", 30),
            (5, 2, "view", 0),
        ]
    )
    model = RecentlyPopular(frame, n_items=3, window_days=14)
    np.testing.assert_allclose(model.recent, [0.5, 2 ** (-7.5 / 7), 0.0], rtol=1e-12)
    assert _ranking(model.scores) == [0, 1, 2]


def test_a_longer_half_life_lets_more_older_buyers_win():
    model = RecentlyPopular(RECENCY, n_items=6, window_days=14, half_life_days=14)
    # item 1: 2 * 2**(-10.5 / 14) = 2 * 2**-0.75 = 1.18921 > item 2: 1.0
    assert model.recent[1] == pytest.approx(2 * 2**-0.75)
    assert _ranking(model.scores)[:2] == [1, 2]


@pytest.mark.parametrize("window_days, half_life_days", [(0, None), (14, 0.0), (14, -1.0)])
def test_recently_popular_rejects_non_positive_window_or_half_life(window_days, half_life_days):
    with pytest.raises(ValueError):
        RecentlyPopular(RECENCY, n_items=6, window_days=window_days, half_life_days=half_life_days)


# --- ItemItemCooccurrence -------------------------------------------------------------------

# users x items (1 = any interaction):   columns as user sets:
#        i0 i1 i2 i3                      i0 = {u0, u1}      |i0| = sqrt 2
#   u0    1  1  .  .                      i1 = {u0, u1, u2}  |i1| = sqrt 3
#   u1    1  1  1  .                      i2 = {u1}          |i2| = 1
#   u2    .  1  .  1                      i3 = {u2}          |i3| = 1
# u3 has no interaction (cold).
# cos(0,1) = 2 / (sqrt2 sqrt3) = 2/sqrt6 = 0.81650   cos(0,2) = 1 / sqrt2 = 0.70711
# cos(1,2) = cos(1,3) = 1 / sqrt3 = 0.57735          cos(0,3) = cos(2,3) = 0
COOCCURRENCE = _frame(
    [
        (0, 0, "view", 3),
        (0, 1, "view", 3),
        (1, 0, "view", 2),
        (1, 1, "cart", 2),
        (1, 2, "purchase", 1),
        (2, 1, "view", 1),
        (2, 3, "purchase", 1),
    ]
)
R6, R2, R3 = 2 / np.sqrt(6), 1 / np.sqrt(2), 1 / np.sqrt(3)
COSINE = np.array(
    [
        [0.0, R6, R2, 0.0],
        [R6, 0.0, R3, R3],
        [R2, R3, 0.0, 0.0],
        [0.0, R3, 0.0, 0.0],
    ]
)


def test_item_item_similarity_is_the_cosine_of_item_columns_with_a_zero_diagonal():
    model = ItemItemCooccurrence(COOCCURRENCE, n_users=4, n_items=4)
    assert sp.issparse(model.similarity)
    np.testing.assert_allclose(model.similarity.toarray(), COSINE, rtol=1e-12, atol=0)


def test_item_item_scores_sum_the_similarities_of_the_users_items():
    model = ItemItemCooccurrence(COOCCURRENCE, n_users=4, n_items=4)
    expected = np.array(
        [
            COSINE[0] + COSINE[1],  # u0 = [2/sqrt6, 2/sqrt6, 1/sqrt2 + 1/sqrt3, 1/sqrt3]
            COSINE[0] + COSINE[1] + COSINE[2],  # u1 = [1.52360, 1.39385, 1.28446, 0.57735]
            COSINE[1] + COSINE[3],  # u2 = [2/sqrt6, 1/sqrt3, 1/sqrt3, 1/sqrt3]
        ]
    )
    np.testing.assert_allclose(model(np.array([0, 1, 2])), expected, rtol=1e-12)
    assert _ranking(model(np.array([1]))[0]) == [0, 1, 2, 3]


def test_a_cold_user_gets_the_popularity_ranking_below_every_cooccurrence_score():
    model = ItemItemCooccurrence(COOCCURRENCE, n_users=4, n_items=4)
    # MostPopular: buyers [0, 0, 1, 1], users [2, 3, 1, 1] -> positions [2, 3, 1, 0]
    # scores [2/4, 3/4, 1 + 1/4, 1 + 0/4] = [0.5, 0.75, 1.25, 1.0], scaled by / (1.25 + 1) - 1
    fallback = np.array([0.5, 0.75, 1.25, 1.0]) / 2.25 - 1
    cold = model(np.array([3]))[0]
    np.testing.assert_allclose(cold, fallback, rtol=1e-12)
    assert _ranking(cold) == [2, 3, 1, 0]
    assert (cold < 0).all() and (cold >= -1).all()


def test_top_neighbours_keeps_each_items_largest_similarities():
    model = ItemItemCooccurrence(COOCCURRENCE, n_users=4, n_items=4, top_neighbours=1)
    # row 0: max(0.8165 @1, 0.7071 @2) -> 1; row 1: 0.8165 @0; row 2: 0.7071 @0; row 3: 0.5774 @1
    expected = np.zeros((4, 4))
    for row, col in ((0, 1), (1, 0), (2, 0), (3, 1)):
        expected[row, col] = COSINE[row, col]
    np.testing.assert_allclose(model.similarity.toarray(), expected, rtol=1e-12, atol=0)
    # u2 (items 1, 3): row 1 + row 3 = [0.8165, 0.5774, 0, 0]; items 2 and 3 have no score and
    # fall back to popularity below zero (item 2 before item 3)
    u2 = model(np.array([2]))[0]
    np.testing.assert_allclose(u2[:2], [R6, R3], rtol=1e-12)
    assert (u2[2:] < 0).all()
    assert _ranking(u2) == [0, 1, 2, 3]


def test_top_neighbours_cut_through_a_tie_keeps_the_lower_index_and_never_a_zero():
    model = ItemItemCooccurrence(COOCCURRENCE, n_users=4, n_items=4, top_neighbours=2)
    # row 1 = [0.8165, 0, 0.5774, 0.5774]: 0.8165 and the tie's lower index 2 stay, 3 goes;
    # row 3 has a single positive similarity and keeps only that one
    expected = COSINE.copy()
    expected[1, 3] = 0.0
    np.testing.assert_allclose(model.similarity.toarray(), expected, rtol=1e-12, atol=0)
    assert model.similarity.nnz == 7


def test_top_neighbours_matches_a_dense_sort_and_does_not_depend_on_the_chunk_size(monkeypatch):
    frame = _random_frame(seed=3)
    x = sp.csr_matrix((np.ones(len(frame)), (frame["u"], frame["i"])), shape=(60, 25))
    x.sum_duplicates()
    x.data[:] = 1.0  # binary: one per (user, item) pair
    full = sklearn_cosine(x.T)
    np.fill_diagonal(full, 0.0)
    pruned = cosine_similarity(x, top_neighbours=3)
    np.testing.assert_allclose(np.sort(pruned.toarray(), axis=1)[:, -3:], np.sort(full, axis=1)[:, -3:], atol=1e-12)
    assert (np.diff(pruned.indptr) <= 3).all()
    np.testing.assert_allclose(cosine_similarity(x).toarray(), full, atol=1e-12)
    monkeypatch.setattr(rec_baselines, "_BLOCK_CELLS", 2 * 25)  # two item rows per chunk
    chunked = cosine_similarity(x, top_neighbours=3)
    assert (chunked != pruned).nnz == 0


def test_weights_use_the_strongest_interaction_of_each_pair():
    # u0: viewed item 0 twice and carted it, bought item 1; u1 bought both.
    # X = [[max(1, 1, 2), 4], [4, 4]] = [[2, 4], [4, 4]] (a sum would give 4 and a cosine of 1)
    # cos(0, 1) = (2*4 + 4*4) / (sqrt(4 + 16) sqrt(16 + 16)) = 24 / sqrt 640 = 0.94868
    frame = _frame(
        [
            (0, 0, "view", 3),
            (0, 0, "view", 2),
            (0, 0, "cart", 1),
            (0, 1, "purchase", 1),
            (1, 0, "purchase", 1),
            (1, 1, "purchase", 1),
        ]
    )
    weights = {"view": 1.0, "cart": 2.0, "purchase": 4.0}
    model = ItemItemCooccurrence(frame, n_users=2, n_items=2, weights=weights)
    np.testing.assert_array_equal(model.user_items.toarray(), [[2.0, 4.0], [4.0, 4.0]])
    s = 24 / np.sqrt(640)
    np.testing.assert_allclose(model.similarity.toarray(), [[0.0, s], [s, 0.0]], rtol=1e-12)
    # u0: [4 * s, 2 * s]
    np.testing.assert_allclose(model(np.array([0])), [[4 * s, 2 * s]], rtol=1e-12)
    unweighted = ItemItemCooccurrence(frame, n_users=2, n_items=2)
    np.testing.assert_allclose(unweighted.similarity.toarray(), [[0.0, 1.0], [1.0, 0.0]], rtol=1e-12)


def test_top_neighbours_must_be_positive():
    with pytest.raises(ValueError):
        ItemItemCooccurrence(COOCCURRENCE, n_users=4, n_items=4, top_neighbours=0)


# --- all scorers ----------------------------------------------------------------------------

BUILDERS = {
    "most_popular": lambda frame: MostPopular(frame, n_items=25),
    "recently_popular": lambda frame: RecentlyPopular(frame, n_items=25, window_days=7),
    "item_item": lambda frame: ItemItemCooccurrence(frame, n_users=70, n_items=25, top_neighbours=5),
    "item_item_weighted": lambda frame: ItemItemCooccurrence(
        frame, n_users=70, n_items=25, weights={"view": 1, "cart": 2, "purchase": 4}
    ),
}


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("users", [[0, 5, 5, 65], []])
def test_scorers_return_a_float64_users_by_items_matrix(name, users):
    scorer = BUILDERS[name](_random_frame(seed=1))
    scores = scorer(np.array(users, dtype=np.int64))
    assert scores.shape == (len(users), 25)
    assert scores.dtype == np.float64
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("name", BUILDERS)
def test_scorers_are_deterministic_and_ignore_the_row_order_of_the_input(name):
    frame = _random_frame(seed=2)
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    users = np.arange(70)
    first = BUILDERS[name](frame)(users)
    np.testing.assert_array_equal(first, BUILDERS[name](frame)(users))
    np.testing.assert_array_equal(first, BUILDERS[name](shuffled)(users))
    # a full ranking: no two items share a score for a user without history (user 65 .. 69)
    cold = first[65]
    assert len(np.unique(cold)) == 25
