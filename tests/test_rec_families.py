"""EASE and ALS: EASE's closed form against a plain numpy inverse, the item limit's fallback, the
rows of users without history, and ALS's reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ml.rec_baselines import MostPopular
from ml.rec_families import ALS, EASE, _mirror_lower, ease_weights

AS_OF = pd.Timestamp("2026-10-31")


def _frame(seed: int, n_users: int = 40, n_items: int = 12, n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "u": rng.integers(0, n_users - 2, n),  # the last two users have no history
            "i": rng.integers(0, n_items, n),
            "interaction_type": rng.choice(["view", "purchase"], n),
            "occurred_at": AS_OF - pd.to_timedelta(rng.integers(0, 300, n), unit="h"),
        }
    )


def _binary(frame: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    x = np.zeros(shape)
    x[frame["u"], frame["i"]] = 1.0
    return x


def test_ease_weights_are_the_closed_form_with_a_zero_diagonal():
    frame = _frame(0)
    x = _binary(frame, (40, 12))
    p = np.linalg.inv(x.T @ x + 7.0 * np.eye(12))
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    got = ease_weights(sp.csr_matrix(x), 7.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.all(np.diag(got) == 0.0)


def test_mirroring_the_lower_triangle_in_blocks_gives_a_symmetric_matrix():
    m = np.tril(np.arange(49, dtype=np.float32).reshape(7, 7))
    _mirror_lower(m, block=3)  # blocks that do not divide the size
    np.testing.assert_array_equal(m, m.T)
    np.testing.assert_array_equal(np.tril(m), np.tril(np.arange(49, dtype=np.float32).reshape(7, 7)))


def test_ease_scores_a_user_by_their_history_times_the_weights():
    frame = _frame(1)
    x = _binary(frame, (40, 12))
    model = EASE(frame, 40, 12, lam=5.0)
    scores = model(np.array([0, 3]))
    raw = x[[0, 3]] @ ease_weights(sp.csr_matrix(x), 5.0)
    # the same order as X[u] B (shifted so its lowest score is 0), every score >= 0
    for row, expected in zip(scores, raw, strict=True):
        assert np.all(row >= 0)
        np.testing.assert_allclose(row - row.min(), expected - expected.min(), atol=1e-5)


def test_users_without_history_get_the_popularity_ranking_below_zero():
    frame = _frame(2)
    popularity = MostPopular(frame, 12).scores
    for model in (EASE(frame, 40, 12, lam=5.0), ALS(frame, 40, 12, factors=4, iterations=3)):
        rows = model(np.array([38, 39]))
        assert np.all(rows < 0) and np.all(rows >= -1)
        for row in rows:
            assert np.argsort(-row, kind="stable").tolist() == np.argsort(-popularity, kind="stable").tolist()


def test_ease_above_its_item_limit_fits_the_most_used_items_and_ranks_the_rest_by_popularity():
    # items 0-2 used by many users, items 3-5 by one each
    rows = [(u, i) for u in range(10) for i in range(3)] + [(0, 3), (1, 4), (2, 5)]
    frame = pd.DataFrame(rows, columns=["u", "i"]).assign(interaction_type="purchase", occurred_at=AS_OF)
    model = EASE(frame, 10, 6, lam=1.0, max_items=3)
    assert model.fitted_items == 3 and model.items.tolist() == [0, 1, 2]
    scores = model(np.arange(10))
    # every fitted item ranks above every other item for a user with history
    assert np.all(scores[:, :3].min(axis=1) > scores[:, 3:].max(axis=1))
    assert np.all(scores[:, 3:] < 0)


def test_ease_refuses_a_lambda_that_is_not_positive():
    with pytest.raises(ValueError, match="lambda must be positive"):
        EASE(_frame(3), 40, 12, lam=0.0)


def test_als_with_the_same_seed_and_one_thread_is_the_same_model():
    frame = _frame(4)
    a = ALS(frame, 40, 12, factors=8, iterations=5, seed=7)
    b = ALS(frame, 40, 12, factors=8, iterations=5, seed=7)
    np.testing.assert_array_equal(a(np.arange(38)), b(np.arange(38)))
    # and a user's own items score above the items they never touched, on average
    x = _binary(frame, (40, 12))
    scores = a(np.arange(38))
    assert scores[x[:38] == 1].mean() > scores[x[:38] == 0].mean()


def _planted_today():
    from tests.test_rec_evaluation import _planted

    inter, users, items = _planted()
    users = users.assign(personalization_consent=True)
    items = items.assign(brand="x", price_band="low", is_active=True)
    return inter, users, items


@pytest.mark.parametrize("family", ["ease", "ease_recent", "als"])
def test_a_family_champion_lists_todays_customers_from_todays_history_under_the_rules(family):
    import polars as pl

    from ml.rec_evaluation import prepare_tables
    from ml.rec_families import fit_family
    from ml.rec_lists import ListRules, champion_family_lists, family_lists, published_bundle
    from ml.recommender import RecommenderParams

    inter, users, items = _planted_today()
    params = RecommenderParams(family=family, k=3, ease_lambda=1.0, als_factors=4, als_iterations=10, seed=3)
    data = prepare_tables(inter, users[["customer_key", "taste"]], items[["product_id", "category"]])
    model = fit_family(data, params)
    rules = ListRules(k=3, max_per_category=3)
    published = family_lists(model, data, users, items, rules, params)
    # a0 bought a_item0 and a_item1: a_item2 is the one new item of their taste, ranked first
    a0 = published[published["customer_key"] == "a0"]
    assert a0["product_id"].astype(str).iloc[0] == "a_item2"
    assert not set(a0["product_id"].astype(str)) & {"a_item0", "a_item1"}  # bought: excluded
    # u_new has no history: the popular list, as for customers without consent
    assert set(published.loc[published["customer_key"] == "u_new", "source"]) == {"popularity"}

    bundle = published_bundle(model, data, params)
    assert bundle["family"] == family and "user_id_map" not in bundle  # no customer in the bundle
    # today: a0 withdrew consent, a_item2 was deactivated, u_new bought b_item0, a new customer
    today = pd.concat(
        [users, pd.DataFrame([{"customer_key": "fresh", "taste": "a", "personalization_consent": True}])],
        ignore_index=True,
    )
    today.loc[today["customer_key"] == "a0", "personalization_consent"] = False
    items_today = items.assign(is_active=items["product_id"] != "a_item2")
    inter_today = pd.concat(
        [
            inter,
            pd.DataFrame(
                [("u_new", "b_item0", "purchase", inter["occurred_at"].max() + pd.Timedelta(days=1))],
                columns=inter.columns,
            ),
        ],
        ignore_index=True,
    )
    lists = champion_family_lists(bundle, pl.from_pandas(today), pl.from_pandas(items_today), inter_today, rules)
    lists = lists.assign(customer_key=lists["customer_key"].astype(str), product_id=lists["product_id"].astype(str))
    assert "a_item2" not in set(lists["product_id"])
    source = lists.groupby("customer_key")["source"].first()
    assert source["a0"] == "popularity" and source["fresh"] == "popularity"
    # u_new's new purchase counts at once: personalised, from the b taste, b_item0 left out
    mine = lists[lists["customer_key"] == "u_new"]
    assert source["u_new"] == "personalised" and "b_item0" not in set(mine["product_id"])
    assert mine["product_id"].iloc[0] in {"b_item1", "b_item2"}
    assert len(lists) == 3 * len(today)


def test_the_registered_family_model_ranks_a_history_it_is_given():
    from ml.rec_evaluation import prepare_tables
    from ml.rec_families import fit_family
    from ml.rec_lists import published_bundle
    from ml.recommender import RecommenderParams
    from ml.tracking import FamilyRecommender

    inter, users, items = _planted_today()
    params = RecommenderParams(family="ease", k=3, ease_lambda=1.0)
    data = prepare_tables(inter, users[["customer_key", "taste"]], items[["product_id", "category"]])
    pyfunc = FamilyRecommender()
    pyfunc.bundle = published_bundle(fit_family(data, params), data, params)
    history = pd.DataFrame(
        {"customer_key": ["x", "x", "y", "z"], "product_id": ["b_item0", "b_item1", "a_item0", "unknown"]}
    )
    out = pyfunc.predict(None, history)
    # z's only product is unknown: no rows; x and y get k rows each, their taste first
    assert sorted(set(out["customer_key"])) == ["x", "y"] and len(out) == 6
    assert out[out["customer_key"] == "x"]["product_id"].iloc[0] == "b_item2"
    assert out[out["customer_key"] == "y"]["product_id"].iloc[0].startswith("a_")


def test_recent_ease_blends_a_decayed_normalised_history_with_recent_popularity():
    from ml.rec_families import RecentEASE, recency_history

    frame = _frame(5)
    model = RecentEASE(frame, 40, 12, lam=5.0, half_life_days=2.0, recent_weight=0.5, recent_days=7)
    history = recency_history(frame, 40, 12, 2.0)
    # each row with history sums to 1, and a pair counts at its latest interaction
    sums = np.asarray(history.sum(axis=1)).ravel()
    np.testing.assert_allclose(sums[:38][sums[:38] > 0], 1.0, rtol=1e-6)
    user = int(frame["u"].iloc[0])
    expected = history[user].toarray()[0] @ ease_weights(sp.csr_matrix(_binary(frame, (40, 12))), 5.0)
    expected = expected + 0.5 * model.recent
    got = model(np.array([user]))[0]
    np.testing.assert_allclose(got - got.min(), expected - expected.min(), atol=1e-5)
    assert model.recent.max() == pytest.approx(1.0)


def test_ease_scores_with_float32_operands_so_the_weights_are_never_copied():
    # a float64 history made scipy copy the float32 weights to float64 on every scoring chunk
    # (3.2 GB at 20,000 items, 50x slower at 1M customers); scores equal the float64 product's
    train = pd.DataFrame({"u": [0, 0, 1, 1, 2, 2, 3], "i": [0, 1, 1, 2, 0, 2, 3], "interaction_type": "purchase"})
    model = EASE(train, n_users=4, n_items=4, lam=1.0)
    assert model.user_items.dtype == np.float32 and model.weights.dtype == np.float32
    x = model.user_items.astype(np.float64).toarray()
    expected = x[[0, 2]] @ model.weights.astype(np.float64)
    got = model(np.array([0, 2]))
    np.testing.assert_allclose(
        got - got.min(axis=1, keepdims=True), expected - expected.min(axis=1, keepdims=True), rtol=1e-6
    )
