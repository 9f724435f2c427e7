"""Top-k ranking metrics: hand-computed expectations on tiny score matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from ml.rec_metrics import MetricAccumulator, top_k, user_metrics

INF = np.inf
D2 = 1 / math.log2(3)  # discount of slot 2: 1 / log2(2 + 1) = 0.6309...
D3 = 1 / math.log2(4)  # discount of slot 3: 1 / log2(3 + 1) = 0.5


def pairs(n_users: int, n_items: int, items_per_user: list[list[int]]) -> sp.csr_matrix:
    rows = [u for u, items in enumerate(items_per_user) for _ in items]
    cols = [i for items in items_per_user for i in items]
    return sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(n_users, n_items))


# Two users, five items, k = 3.
# user 0 ranks 0 (.9), 3 (.7), 2 (.5), 4 (.3), 1 (.1); relevant {2, 3}
# user 1 ranks 1 (.8), 4 (.6), 3 (.4), 0 (.2), 2 (.2; tie with 0, higher index last); relevant {0, 3}
SCORES = np.array(
    [
        [0.9, 0.1, 0.5, 0.7, 0.3],
        [0.2, 0.8, 0.2, 0.4, 0.6],
    ]
)
POSITIVES = pairs(2, 5, [[2, 3], [0, 3]])


def test_two_users_five_items_match_the_hand_computation():
    m = user_metrics(SCORES, POSITIVES, k=3)
    assert m["top"].tolist() == [[0, 3, 2], [1, 4, 3]]
    # user 0: slots hit = [0, 1, 1]; user 1: slots hit = [0, 0, 1]
    assert m["precision"] == pytest.approx([2 / 3, 1 / 3])  # 2 hits / 3 slots; 1 hit / 3 slots
    assert m["recall"] == pytest.approx([2 / 2, 1 / 2])  # 2 of 2 relevant; 1 of 2 relevant
    assert m["ndcg"] == pytest.approx(
        [
            (D2 + D3) / (1 + D2),  # (0.6309 + 0.5) / (1 + 0.6309) = 0.6934; ideal: 2 hits in slots 1-2
            D3 / (1 + D2),  # 0.5 / 1.6309 = 0.3066
        ]
    )
    assert m["ap"] == pytest.approx(
        [
            (1 / 2 + 2 / 3) / 2,  # P@2 = 1/2, P@3 = 2/3, / min(n_pos=2, k=3) = 7/12 = 0.5833
            (1 / 3) / 2,  # P@3 = 1/3, / min(2, 3) = 1/6
        ]
    )
    assert m["auc"] == pytest.approx(
        [
            4 / 6,  # relevant .7 and .5 each beat .3 and .1, lose to .9: (2 + 2) / (2 * 3)
            1.5 / 6,  # .2 ties .2 (1/2) and loses to .8, .6; .4 beats .2, loses to .8, .6: (0.5 + 1) / 6
        ]
    )


@pytest.mark.parametrize(
    "relevant_item, ndcg, ap",
    [
        (0, 1.0, 1.0),  # hit in slot 1: 1 / log2(2) = 1; AP = P@1 = 1
        (1, D2, 1 / 2),  # hit in slot 2: 1 / log2(3) = 0.6309; AP = P@2 = 1/2
        (2, D3, 1 / 3),  # hit in slot 3: 1 / log2(4) = 0.5; AP = P@3 = 1/3
        (3, 0.0, 0.0),  # relevant item ranked 4th, outside the top 3
    ],
)
def test_ndcg_and_ap_fall_with_the_slot_of_the_single_hit(relevant_item, ndcg, ap):
    scores = np.array([[0.4, 0.3, 0.2, 0.1]])  # ranking 0, 1, 2, 3
    m = user_metrics(scores, pairs(1, 4, [[relevant_item]]), k=3)
    assert m["ndcg"][0] == pytest.approx(ndcg)
    assert m["ap"][0] == pytest.approx(ap)
    assert m["precision"][0] == pytest.approx(1 / 3 if relevant_item < 3 else 0.0)


def test_ap_and_ndcg_are_normalised_by_at_most_k_positives_while_recall_uses_all():
    # ranking 0, 1, 2, 3, 4; relevant {0, 1, 4}; k = 2: both slots hit
    scores = np.array([[0.5, 0.4, 0.3, 0.2, 0.1]])
    m = user_metrics(scores, pairs(1, 5, [[0, 1, 4]]), k=2)
    assert m["ap"][0] == pytest.approx(1.0)  # (P@1 + P@2) / min(3, 2) = (1 + 1) / 2, not / 3
    assert m["ndcg"][0] == pytest.approx(1.0)  # (1 + D2) / (1 + D2): ideal has only 2 slots
    assert m["recall"][0] == pytest.approx(2 / 3)  # 2 hits / 3 relevant
    assert m["precision"][0] == pytest.approx(1.0)  # 2 hits / 2 slots
    # relevant .5, .4 beat .3, .2; .1 beats nothing: (2 + 2 + 0) / (3 * 2)
    assert m["auc"][0] == pytest.approx(4 / 6)


def test_top_k_breaks_ties_by_the_lower_item_index():
    scores = np.array(
        [
            [1.0, 3.0, 3.0, 2.0, 3.0],  # three-way tie for first
            [5.0, 1.0, 5.0, 5.0, 0.0],  # tie straddling the cut at k = 2: items 0, 2 in, 3 out
            [0.0, 0.0, 0.0, 0.0, 0.0],  # all tied
        ]
    )
    assert top_k(scores, 2).tolist() == [[1, 2], [0, 2], [0, 1]]
    assert top_k(scores, 4).tolist() == [[1, 2, 4, 3], [0, 2, 3, 1], [0, 1, 2, 3]]


def test_top_k_never_returns_minus_inf_items_and_pads_with_minus_one():
    scores = np.array(
        [
            [-INF, 2.0, -INF, 1.0],  # two rankable items
            [-INF, -INF, -INF, -INF],  # nothing rankable
        ]
    )
    assert top_k(scores, 3).tolist() == [[1, 3, -1], [-1, -1, -1]]
    # k larger than the catalogue
    assert top_k(scores, 6).tolist() == [[1, 3, -1, -1, -1, -1], [-1] * 6]


def test_top_k_agrees_with_a_stable_full_sort_on_heavily_tied_scores():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 30)).astype(float)  # four distinct values: many ties
    scores[rng.random(scores.shape) < 0.2] = -INF
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :7]
    expected = np.where(np.take_along_axis(scores, expected, axis=1) == -INF, -1, expected)
    assert np.array_equal(top_k(scores, 7), expected)


def test_top_k_rejects_nan_scores_and_non_positive_k():
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([[0.1, np.nan]]), 1)
    with pytest.raises(ValueError, match="k must be"):
        top_k(np.array([[0.1, 0.2]]), 0)


def test_exclusion_changes_the_ranking_and_removes_items_from_the_auc_candidates():
    # ranking 0 (.9), 1 (.8), 2 (.7), 3 (.6), 4 (.1); relevant {2, 4}; k = 2
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.1]])
    positives = pairs(1, 5, [[2, 4]])

    plain = user_metrics(scores, positives, k=2)
    assert plain["top"].tolist() == [[0, 1]]
    assert plain["precision"][0] == 0.0  # no relevant item in the top 2
    # relevant .7 beats .6, .1 beats nothing; non-relevant candidates .9, .8, .6: (1 + 0) / (2 * 3)
    assert plain["auc"][0] == pytest.approx(1 / 6)

    excluded = user_metrics(scores, positives, k=2, exclude=pairs(1, 5, [[0]]))
    assert excluded["top"].tolist() == [[1, 2]]
    assert excluded["precision"][0] == pytest.approx(1 / 2)  # item 2 now in slot 2
    assert excluded["ndcg"][0] == pytest.approx(D2 / (1 + D2))  # hit in slot 2, ideal 2 hits
    # item 0 is no candidate: non-relevant candidates .8, .6: (1 + 0) / (2 * 2)
    assert excluded["auc"][0] == pytest.approx(1 / 4)
    # the caller's scores are left untouched
    assert scores[0, 0] == 0.9


def test_an_excluded_positive_is_not_counted_as_relevant():
    # relevant {0, 2} but item 0 was already bought: only item 2 is a relevant candidate
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.1]])
    m = user_metrics(scores, pairs(1, 5, [[0, 2]]), k=2, exclude=pairs(1, 5, [[0]]))
    assert m["top"].tolist() == [[1, 2]]
    assert m["recall"][0] == pytest.approx(1.0)  # 1 hit / n_pos 1, not 1 / 2
    assert m["ndcg"][0] == pytest.approx(D2)  # hit in slot 2 / ideal of min(1, 2) = 1 hit: D2 / 1
    assert m["ap"][0] == pytest.approx(1 / 2)  # P@2 / min(1, 2)
    # relevant .7 vs non-relevant candidates .8, .6, .1: beats 2 of 3
    assert m["auc"][0] == pytest.approx(2 / 3)


def test_precision_divides_by_k_even_when_fewer_items_can_be_ranked():
    # only items 0 and 2 are rankable and both are relevant; k = 4 leaves two empty slots
    scores = np.array([[0.5, -INF, 0.4, -INF, -INF]])
    m = user_metrics(scores, pairs(1, 5, [[0, 2]]), k=4)
    assert m["top"].tolist() == [[0, 2, -1, -1]]
    assert m["precision"][0] == pytest.approx(2 / 4)  # 2 hits / k = 4, not / 2 rankable items
    assert m["recall"][0] == pytest.approx(1.0)
    assert m["ndcg"][0] == pytest.approx(1.0)  # (1 + D2) / ideal over min(2, 4) = 2 hits
    assert m["ap"][0] == pytest.approx(1.0)  # (P@1 + P@2) / min(2, 4)
    assert np.isnan(m["auc"][0])  # no non-relevant candidate


def test_minus_inf_scores_are_treated_like_exclusions():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.1]])
    blocked = scores.copy()
    blocked[0, 0] = -INF
    by_score = user_metrics(blocked, pairs(1, 5, [[0, 2]]), k=2)
    by_exclusion = user_metrics(scores, pairs(1, 5, [[0, 2]]), k=2, exclude=pairs(1, 5, [[0]]))
    for name in ("precision", "recall", "ndcg", "ap", "auc", "top"):
        assert np.array_equal(by_score[name], by_exclusion[name]), name


def test_a_user_without_positives_gets_nan_and_does_not_count_in_the_means():
    scores = np.vstack([SCORES, [[0.5, 0.4, 0.3, 0.2, 0.1]]])
    positives = sp.vstack([POSITIVES, pairs(1, 5, [[]])]).tocsr()
    m = user_metrics(scores, positives, k=3)
    for name in ("precision", "recall", "ndcg", "ap", "auc"):
        assert np.isnan(m[name][2]), name
    assert m["top"][2].tolist() == [0, 1, 2]  # still ranked

    acc = MetricAccumulator(k=3, n_items=5, item_popularity=np.full(5, 0.5))
    acc.add(scores, positives)
    out = acc.result()
    assert out["users"] == 2
    assert out["precision_at_3"] == pytest.approx((2 / 3 + 1 / 3) / 2)  # users 0 and 1 only, not / 3
    assert out["recall_at_3"] == pytest.approx((1 + 1 / 2) / 2)
    assert out["map_at_3"] == pytest.approx((7 / 12 + 1 / 6) / 2)
    assert out["auc"] == pytest.approx((4 / 6 + 1.5 / 6) / 2)


def test_auc_is_nan_without_a_non_relevant_candidate_and_left_out_of_the_auc_mean():
    # user 0: items 1 and 2 relevant, item 0 excluded -> no non-relevant candidate
    # user 1: relevant {0}; its .3 beats both non-relevant .2 and .1: auc 2 / 2 = 1
    scores = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    positives = pairs(2, 3, [[1, 2], [0]])
    exclude = pairs(2, 3, [[0], []])
    m = user_metrics(scores, positives, k=2, exclude=exclude)
    assert np.isnan(m["auc"][0])
    assert m["precision"][0] == pytest.approx(1.0)  # the other metrics stay defined
    acc = MetricAccumulator(k=2, n_items=3, item_popularity=np.full(3, 0.5))
    acc.add(scores, positives, exclude)
    out = acc.result()
    assert out["users"] == 2
    assert out["auc"] == pytest.approx(1.0)  # user 1 only


def test_auc_agrees_with_sklearn_on_random_tied_scores_with_exclusions():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, size=(40, 25)).astype(float)
    positives = sp.csr_matrix(rng.random(scores.shape) < 0.2)
    exclude = sp.csr_matrix(rng.random(scores.shape) < 0.15)
    auc = user_metrics(scores, positives, k=5, exclude=exclude)["auc"]
    for u in range(scores.shape[0]):
        keep = ~exclude[u].toarray().ravel()
        labels = positives[u].toarray().ravel()[keep]
        if 0 < labels.sum() < labels.size:
            assert auc[u] == pytest.approx(roc_auc_score(labels, scores[u, keep]))
        else:
            assert np.isnan(auc[u])


def test_accumulating_two_chunks_equals_one_call_over_all_rows():
    rng = np.random.default_rng(2)
    n_users, n_items = 9, 12
    scores = np.round(rng.random((n_users, n_items)), 1)  # one decimal: ties
    relevant = rng.random((n_users, n_items)) < 0.2
    relevant[4] = False  # a user without positives
    positives = sp.csr_matrix(relevant)
    exclude = sp.csr_matrix(rng.random((n_users, n_items)) < 0.2)
    popularity = rng.random(n_items)

    whole = MetricAccumulator(k=4, n_items=n_items, item_popularity=popularity, min_popularity=0.05)
    whole.add(scores, positives, exclude)
    chunked = MetricAccumulator(k=4, n_items=n_items, item_popularity=popularity, min_popularity=0.05)
    chunked.add(scores[:5], positives[:5], exclude[:5])
    chunked.add(scores[5:], positives[5:], exclude[5:])

    expected, got = whole.result(), chunked.result()
    assert list(got) == [
        "precision_at_4",
        "recall_at_4",
        "ndcg_at_4",
        "map_at_4",
        "auc",
        "coverage_at_4",
        "novelty_at_4",
        "users",
    ]
    assert got == pytest.approx(expected)
    per_user = user_metrics(scores, positives, 4, exclude)
    assert got["users"] == int((~np.isnan(per_user["precision"])).sum())
    assert got["ndcg_at_4"] == pytest.approx(np.nanmean(per_user["ndcg"]))


def test_coverage_and_novelty_count_the_evaluated_users_top_k_only():
    popularity = np.array([0.5, 0.25, 0.125, 0.0, 1.0])
    # -log2 p: item 0 -> 1, item 1 -> 2, item 2 -> 3, item 3 -> -log2(1/16) = 4 (floored), item 4 -> 0
    scores = np.array(
        [
            [0.9, 0.8, 0.1, 0.2, 0.3],  # top 2: [0, 1]
            [0.9, 0.1, 0.2, 0.8, 0.3],  # top 2: [0, 3]
            [0.1, 0.2, 0.9, 0.3, 0.8],  # top 2: [2, 4], but no positives: not evaluated
            [0.5, -INF, -INF, -INF, -INF],  # top 2: [0, -1]: the empty slot is not a recommendation
        ]
    )
    positives = pairs(4, 5, [[1], [2], [], [0]])
    acc = MetricAccumulator(k=2, n_items=5, item_popularity=popularity, min_popularity=1 / 16)
    acc.add(scores, positives)
    out = acc.result()
    assert out["users"] == 3
    assert out["coverage_at_2"] == pytest.approx(3 / 5)  # items {0, 1, 3} of 5
    # pairs: (0: 1) (1: 2) (0: 1) (3: 4) (0: 1) -> (1 + 2 + 1 + 4 + 1) / 5
    assert out["novelty_at_2"] == pytest.approx(9 / 5)


def test_an_empty_accumulator_reports_no_users_and_nan_means():
    out = MetricAccumulator(k=3, n_items=4, item_popularity=np.full(4, 0.25)).result()
    assert out["users"] == 0
    assert np.isnan(out["precision_at_3"]) and np.isnan(out["auc"]) and np.isnan(out["novelty_at_3"])
    assert out["coverage_at_3"] == 0.0


def test_accumulator_rejects_popularity_that_is_not_a_share_per_item():
    with pytest.raises(ValueError, match="shape"):
        MetricAccumulator(k=3, n_items=4, item_popularity=np.full(3, 0.25))
    with pytest.raises(ValueError, match="between 0 and 1"):
        MetricAccumulator(k=3, n_items=2, item_popularity=np.array([0.5, 1.5]))


def test_average_ranks_match_scipy_rankdata_with_ties_and_infinities():
    # regression guard for the bisection that replaces rankdata in the AUC
    from scipy.stats import rankdata

    from ml.rec_metrics import _average_ranks

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, size=(30, 17)).astype(float)
    scores[rng.random(scores.shape) < 0.1] = -INF
    scores[rng.random(scores.shape) < 0.05] = INF
    row, col = np.nonzero(rng.random(scores.shape) < 0.5)
    assert np.array_equal(_average_ranks(scores, row, col), rankdata(scores, axis=1)[row, col])
