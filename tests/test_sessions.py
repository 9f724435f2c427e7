"""Session recommenders (ml/sessions.py), their session-split evaluation (ml/session_evaluation.py)
and the readers of real session data (ml/session_data.py), on fixtures small enough to compute
by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml.session_data import clickstream_sessions, complete_journey_sessions, online_retail_sessions
from ml.session_evaluation import case_metrics, last_item_cases, make_split, remaining_items_cases, split_by_time
from ml.sessions import SKNN, VSKNN, ItemItem, Popularity, query_matrix, sessions_from_events

SHARED = Path("/work/shared/data")
A, B, C, D, E = range(5)


def frame(sessions: dict[str, list[str]], starts: dict[str, int]) -> pl.DataFrame:
    rows = [(s, item, starts[s] + i) for s, items in sessions.items() for i, item in enumerate(items)]
    return pl.DataFrame(rows, schema=["session", "item", "time"], orient="row")


@pytest.fixture
def train():
    # in time order: s0 [a, b], s1 [a, c], s2 [b, c, d], s3 [a, b, e]
    sessions = {"s0": ["a", "b"], "s1": ["a", "c"], "s2": ["b", "c", "d"], "s3": ["a", "b", "e"]}
    return sessions_from_events(frame(sessions, {"s0": 10, "s1": 20, "s2": 30, "s3": 40}), "session", "item", "time")


def scores_of(model, items: list[int]) -> np.ndarray:
    return model.score(query_matrix([items], model.n_items))[0]


def test_sessions_keep_first_positions_and_are_numbered_by_start():
    events = frame({"late": ["x", "y", "x"], "early": ["y", "z"]}, {"late": 100, "early": 5})
    sessions = sessions_from_events(events, "session", "item", "time")
    assert list(sessions.ids) == ["early", "late"]
    assert list(sessions.items) == ["x", "y", "z"]
    # early: y at 1, z at 2; late: x at 1, y at 2 (the repeated x keeps its first position)
    assert sessions.positions.toarray().tolist() == [[0, 1, 2], [1, 2, 0]]
    assert list(sessions.starts) == [5, 100]


def test_item_item_sums_cosine_co_occurrence_over_the_session(train):
    model = ItemItem().fit(train)
    scores = scores_of(model, [C, A])
    # b: cos(c,b) + cos(a,b) = 1/sqrt(6) + 2/3; d: cos(c,d) = 1/sqrt(2); e: cos(a,e) = 1/sqrt(3)
    assert scores[B] == pytest.approx(1 / math.sqrt(6) + 2 / 3)
    assert scores[D] == pytest.approx(1 / math.sqrt(2))
    assert scores[E] == pytest.approx(1 / math.sqrt(3))
    assert scores[A] == scores[C] == -np.inf  # the session's own items are never recommended
    assert list(model.recommend([C, A], 10)[0]) == [B, D, E]


def test_sknn_takes_the_k_most_similar_sessions_and_sums_their_similarities(train):
    # query [c, a]: cosine with s0 = 1/2, s1 = 2/2, s2 = 1/sqrt(6), s3 = 1/sqrt(6)
    two = SKNN(k=2, sample_size=10).fit(train)
    assert scores_of(two, [C, A])[[B, D, E]].tolist() == pytest.approx([0.5, 0, 0])  # s1, s0
    # the third neighbour is a tie between s2 and s3: the more recent s3 wins
    three = SKNN(k=3, sample_size=10).fit(train)
    assert scores_of(three, [C, A])[[B, D, E]].tolist() == pytest.approx([0.5 + 1 / math.sqrt(6), 0, 1 / math.sqrt(6)])
    assert list(three.recommend([C, A], 3)[0]) == [B, E, D]


def test_sknn_samples_only_the_most_recent_sessions_holding_the_query_items(train):
    # sample of 2: s3 and s2, the most recent sessions sharing an item, each at 1/sqrt(6)
    model = SKNN(k=100, sample_size=2).fit(train)
    expected = [2 / math.sqrt(6), 1 / math.sqrt(6), 1 / math.sqrt(6)]
    assert scores_of(model, [C, A])[[B, D, E]].tolist() == pytest.approx(expected)


def test_vsknn_weights_later_items_more_and_decays_by_the_last_shared_item(train):
    # query [c, a]: weights c = 1/2, a = 1; similarity = shared weights / 2:
    # s0 0.5, s1 0.75, s2 0.25, s3 0.5; s2 shares only c (one step back): halved to 0.125
    model = VSKNN(k=100, sample_size=100).fit(train)
    assert scores_of(model, [C, A])[[B, D, E]].tolist() == pytest.approx([1.125, 0.125, 0.5])
    assert list(model.recommend([C, A], 10)[0]) == [B, E, D]


def test_vsknn_idf_weighting_multiplies_by_one_plus_weighted_idf(train):
    model = VSKNN(k=100, sample_size=100, idf_weight=1.0).fit(train)
    idf_b, idf_rare = math.log(4 / 3), math.log(4)
    expected = [1.125 * (1 + idf_b), 0.125 * (1 + idf_rare), 0.5 * (1 + idf_rare)]
    assert scores_of(model, [C, A])[[B, D, E]].tolist() == pytest.approx(expected)


def test_popularity_counts_training_sessions(train):
    model = Popularity().fit(train)
    assert scores_of(model, [A])[[B, C, D, E]].tolist() == [3, 2, 1, 1]


def test_batch_scores_equal_single_session_scores_in_any_chunking(train):
    queries = query_matrix([[C, A], [B], [D, B, A], [E]], train.n_items)
    for model in (ItemItem().fit(train), SKNN(k=2, sample_size=3).fit(train), VSKNN(k=2).fit(train)):
        whole = model.score(queries)
        chunked = np.vstack([scores for _, scores in model.score_chunks(queries, chunk=3)])
        assert np.array_equal(whole, chunked)
        assert np.array_equal(whole[2], scores_of(model, [D, B, A]))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (lambda: SKNN(k=0), "k must be a positive integer"),
        (lambda: SKNN(sample_size=-1), "sample_size must be a positive integer"),
        (lambda: VSKNN(weighting="log"), "weighting must be one of"),
        (lambda: VSKNN(idf_weight=-1), "idf_weight must be"),
    ],
)
def test_bad_parameters_are_refused_by_name(model, message):
    with pytest.raises(ValueError, match=message):
        model()


def test_the_split_holds_out_the_latest_sessions_and_removes_items_unseen_in_training():
    sessions = {"s0": ["a", "b"], "s1": ["a", "c"], "s2": ["b", "c", "d"], "s3": ["z", "a", "b"], "s4": ["a", "y"]}
    data = sessions_from_events(
        frame(sessions, {"s0": 1, "s1": 2, "s2": 3, "s3": 4, "s4": 5}), "session", "item", "time"
    )
    train_rows, test_rows = split_by_time(data, test_share=0.4)
    assert list(data.ids[train_rows]) == ["s0", "s1", "s2"]
    assert list(data.ids[test_rows]) == ["s3", "s4"]
    split = make_split(data, test_share=0.4)
    # z and y never occur in training: removed; s4 is left with one item and dropped
    assert split.unknown_item_events == 2
    assert split.short_sessions_dropped == 1
    assert list(split.test.ids) == ["s3"]
    items = list(data.items)
    # s3 is [a, b] renumbered from 1
    row = split.test.positions.toarray()[0]
    assert (row[items.index("a")], row[items.index("b")], row[items.index("z")]) == (1, 2, 0)


def test_the_split_by_days_holds_out_sessions_starting_in_the_last_days():
    day = 86_400 * 1_000_000
    data = sessions_from_events(
        frame({"old": ["a", "b"], "new": ["a", "b"]}, {"old": 0, "new": 10 * day}), "session", "item", "time"
    )
    train_rows, test_rows = split_by_time(data, test_share=None, test_days=3)
    assert list(data.ids[train_rows]) == ["old"] and list(data.ids[test_rows]) == ["new"]


def test_last_item_and_remaining_items_cases_give_prefixes_and_what_follows():
    data = sessions_from_events(frame({"s": ["x", "y", "z"]}, {"s": 0}), "session", "item", "time")
    last = last_item_cases(data)
    assert last.queries.toarray().tolist() == [[1, 2, 0]]
    assert last.targets.toarray().tolist() == [[0, 0, 1]]
    rest = remaining_items_cases(data)
    assert rest.queries.toarray().tolist() == [[1, 0, 0], [1, 2, 0]]
    assert rest.targets.toarray().tolist() == [[0, 1, 1], [0, 0, 1]]
    assert remaining_items_cases(data, max_given=1).queries.shape[0] == 1


def test_case_metrics_score_recall_hit_rate_mrr_and_ndcg():
    top = np.array([[3, 1, 2], [0, 1, 2]])
    targets = query_matrix([[1, 2], [4]], 5)
    metrics = case_metrics(top, targets)
    assert metrics["recall"].tolist() == [1.0, 0.0]
    assert metrics["hit_rate"].tolist() == [1.0, 0.0]
    assert metrics["mrr"].tolist() == [0.5, 0.0]
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics["ndcg"].tolist() == pytest.approx([dcg / (1 + 1 / math.log2(3)), 0.0])


def test_clickstream_sessions_keep_anonymous_product_events_in_time_order():
    events = pl.DataFrame(
        {
            "session_id": ["s1", "s1", "s1", "s2"],
            "product_id": ["p2", "p1", None, "p1"],
            "event_type": ["product_view", "add_to_cart", "page_view", "remove_from_cart"],
            "event_ts": [
                "2026-01-01T10:05:00+01:00",
                "2026-01-01T09:01:00Z",
                "2026-01-01T09:00:00Z",
                "2026-01-01T09:00:00Z",
            ],
        }
    )
    out = clickstream_sessions(events)
    # 10:05+01:00 is 09:05 UTC: after p1 at 09:01; the page view and the cart removal are no items
    assert out["item"].to_list() == ["p1", "p2"]
    assert out["session"].to_list() == ["s1", "s1"]


def test_clickstream_sessions_name_a_missing_column():
    with pytest.raises(ValueError, match=r"web.jsonl: missing column\(s\) \['session_id'\]"):
        clickstream_sessions(pl.DataFrame({"product_id": ["p"], "event_type": ["x"], "event_ts": ["t"]}), "web.jsonl")


@pytest.mark.skipif(not (SHARED / "online_retail").is_dir(), reason="no Online Retail data")
def test_online_retail_invoices_become_sessions_without_cancellations():
    out = online_retail_sessions(SHARED / "online_retail" / "online_retail.parquet")
    assert out.columns == ["session", "item", "time"]
    assert not out["session"].str.starts_with("C").any()
    assert out["session"].n_unique() > 18_000


@pytest.mark.skipif(not (SHARED / "complete_journey").is_dir(), reason="no Complete Journey data")
def test_complete_journey_baskets_become_sessions():
    out = complete_journey_sessions(SHARED / "complete_journey" / "transactions_sample.parquet")
    assert out.height == 75_000
    assert out["time"].dtype == pl.Int64
    assert out["time"].is_sorted()
    assert not out["session"].str.contains(r"\.").any()


@pytest.mark.parametrize(
    "params",
    [
        {"k": 1000, "sample_size": 2500, "idf_weight": 1.0},  # the served parameters
        {"k": 5, "sample_size": 20},  # fewer neighbours and a smaller sample than the candidates
        {"k": 10, "sample_size": 30, "weighting": "same", "idf_weight": 0.5},
    ],
)
def test_vsknns_one_session_path_gives_exactly_the_batch_scorers_items_and_scores(params):
    # VSKNN.recommend (the serving path, no sparse matrices) against SessionModel.recommend (the
    # batch scorer on a one-row query), on seeded random sessions with many ties in similarity
    rng = np.random.default_rng(7)
    sessions = {f"s{i:03d}": [f"i{j}" for j in rng.choice(40, rng.integers(1, 8), replace=False)] for i in range(300)}
    train = sessions_from_events(
        frame(sessions, {s: 10 * n for n, s in enumerate(sessions)}), "session", "item", "time"
    )
    model = VSKNN(**params).fit(train)
    for _ in range(100):
        items = rng.choice(train.n_items, rng.integers(1, 6), replace=False).tolist()
        fast, slow = model.recommend(items, 15), super(VSKNN, model).recommend(items, 15)
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
    assert [a.tolist() for a in model.recommend([], 5)] == [[], []]
    with pytest.raises(ValueError, match="item indices must lie in"):
        model.recommend([train.n_items], 5)


def random_train(seed: int, shuffled: bool = False):
    """Seeded random sessions over few items (many ties in similarity); `shuffled`: rows not in time
    order, so recency is not the reverse of the row order."""
    rng = np.random.default_rng(seed)
    sessions = {f"s{i:03d}": [f"i{j}" for j in rng.choice(40, rng.integers(1, 8), replace=False)] for i in range(300)}
    train = sessions_from_events(
        frame(sessions, {s: 10 * (n // 3) for n, s in enumerate(sessions)}), "session", "item", "time"
    )  # three sessions per start: recency ties broken by the row
    return train.subset(rng.permutation(train.n_sessions)) if shuffled else train, rng


@pytest.mark.parametrize("use_sparsetools", [True, False], ids=["scipy_c_routines", "public_scipy"])
@pytest.mark.parametrize("shuffled", [False, True], ids=["rows_by_time", "rows_shuffled"])
@pytest.mark.parametrize(
    "params",
    [
        {"k": 1000, "sample_size": 2500, "idf_weight": 1.0},  # the served parameters
        {"k": 5, "sample_size": 20},  # fewer neighbours and a smaller sample than the candidates
        {"k": 10, "sample_size": 30, "weighting": "same", "idf_weight": 0.5},
        {"k": 1, "sample_size": 1},
    ],
)
def test_the_visitor_routes_path_gives_exactly_the_positive_items_and_scores_of_both_scorers(
    params, shuffled, use_sparsetools, monkeypatch
):
    # VSKNN.recommend_positive (tessera/realtime/visitor_recs.py's path: a partition instead of a
    # sort for the neighbours and the top, the neighbours' rows summed by scipy's C routines)
    # against VSKNN.recommend and the batch scorer, keeping their positive scores: the same items
    # in the same order with bit-equal scores
    import ml.sessions

    if not use_sparsetools:
        monkeypatch.setattr(ml.sessions, "_SPARSETOOLS", None)
    train, rng = random_train(11, shuffled)
    model = VSKNN(**params).fit(train)
    for _ in range(150):
        items = rng.choice(train.n_items, rng.integers(1, 7), replace=False).tolist()
        limit = int(rng.choice([1, 3, 15, 60]))
        got = model.recommend_positive(items, limit)
        for top, scores in (model.recommend(items, limit), super(VSKNN, model).recommend(items, limit)):
            positive = scores > 0
            assert np.array_equal(got[0], top[positive]) and np.array_equal(got[1], scores[positive])
    assert [a.tolist() for a in model.recommend_positive([], 5)] == [[], []]
    assert [a.tolist() for a in model.recommend_positive([A, A, B], 5)] == [
        a.tolist() for a in model.recommend_positive([A, B], 5)
    ]
    with pytest.raises(ValueError, match="item indices must lie in"):
        model.recommend_positive([train.n_items], 5)


def test_other_models_give_their_positive_items_for_the_visitor_route(train):
    top, scores = ItemItem().fit(train).recommend_positive([C, A], 10)
    assert list(top) == [B, D, E] and (scores > 0).all()
