"""The recommender outside Dagster: time split and slices, cold start, decay, determinism, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from ml.rec_evaluation import (
    MODELS,
    SLICES,
    evaluate_split,
    evaluation_as_of,
    features_as_of,
    holdout_start,
    prepare_tables,
    slices,
    time_split,
)
from ml.recommender import (
    LightFMScorer,
    RecommenderParams,
    fit,
    weighted_matrix,
    with_feature_weight,
)
from tessera.cli import main

T0 = pd.Timestamp("2026-10-01")


def _planted() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Two tastes: 'a' customers buy items a0..a2, 'b' customers buy b0..b2. Item and user
    features name the taste. u_new has features but no history (cold)."""
    rows = []
    for taste in ("a", "b"):
        for n in range(8):
            user = f"{taste}{n}"
            for j in range(3):
                if (n + j) % 3 != 2:  # each user bought two of the three items of their taste
                    rows.append((user, f"{taste}_item{j}", "purchase", T0 + pd.Timedelta(days=n + j)))
    inter = pd.DataFrame(rows, columns=["customer_key", "product_id", "interaction_type", "occurred_at"])
    users = pd.DataFrame(
        {
            "customer_key": [f"{t}{n}" for t in "ab" for n in range(8)] + ["u_new"],
            "taste": ["a"] * 8 + ["b"] * 8 + ["a"],
        }
    )
    items = pd.DataFrame({"product_id": [f"{t}_item{j}" for t in "ab" for j in range(3)], "category": list("aaabbb")})
    return inter, users, items


# features weighted as LightFM's Dataset, no decay: what these planted fixtures were written for
PARAMS = RecommenderParams(
    no_components=4, epochs=20, learning_rate=0.05, seed=3, k=3, feature_weight=1.0, half_life_days=0.0
)


def test_training_is_deterministic_and_recovers_the_planted_tastes():
    inter, users, items = _planted()
    data = prepare_tables(inter, users, items)
    first = fit(data, data.interactions, PARAMS)
    second = fit(data, data.interactions, PARAMS)
    np.testing.assert_array_equal(first.item_embeddings, second.item_embeddings)
    np.testing.assert_array_equal(first.user_embeddings, second.user_embeddings)
    scores = LightFMScorer(first, data)(np.array([data.users.id_map["a0"], data.users.id_map["b0"]]))
    names = np.asarray(data.items.ids)
    # a0 bought a_item0 and a_item1 ((0+2) % 3 == 2 skips a_item2): the best unbought item is a_item2
    bought_a0 = [data.items.id_map["a_item0"], data.items.id_map["a_item1"]]
    a0 = scores[0].copy()
    a0[bought_a0] = -np.inf
    assert names[np.argmax(a0)] == "a_item2"
    # b0's three best items are the three b items
    assert set(names[np.argsort(-scores[1])[:3]]) == {"b_item0", "b_item1", "b_item2"}


def test_a_cold_user_is_ranked_by_features():
    inter, users, items = _planted()
    data = prepare_tables(inter, users, items)
    model = fit(data, data.interactions, PARAMS)
    cold = np.zeros(len(data.users.ids), dtype=bool)
    cold[data.users.id_map["u_new"]] = True
    scores = LightFMScorer(model, data, cold_users=cold)(np.array([data.users.id_map["u_new"]]))[0]
    top3 = set(np.asarray(data.items.ids)[np.argsort(-scores)[:3]])
    assert top3 == {"a_item0", "a_item1", "a_item2"}  # u_new has taste 'a' and no history


def test_time_split_slices_warm_cold_and_rebuys():
    inter = pd.DataFrame(
        [
            ("u1", "p1", "purchase", "2026-10-01"),
            ("u1", "p2", "view", "2026-10-02"),
            ("u2", "p2", "purchase", "2026-10-03"),
            # test period (last 5 days: from 2026-10-06)
            ("u1", "p1", "purchase", "2026-10-07"),  # a re-buy: not relevant in the primary slice
            ("u1", "p2", "purchase", "2026-10-08"),
            ("u3", "p1", "purchase", "2026-10-09"),  # cold user
            ("u2", "p3", "purchase", "2026-10-10"),  # p3 was never touched in training: cold item
        ],
        columns=["customer_key", "product_id", "interaction_type", "occurred_at"],
    )
    data = prepare_tables(inter)
    split = time_split(data, holdout_days=5)
    assert split.split_at == pd.Timestamp("2026-10-06")
    s = slices(data, split)
    uid, iid = data.users.id_map, data.items.id_map
    assert set(s["warm"].users) == {uid["u1"], uid["u2"]}
    assert s["warm"].positives[uid["u1"]].indices.tolist() == [iid["p2"]]  # p1 re-buy dropped
    assert s["warm"].exclude[uid["u1"]].indices.tolist() == [iid["p1"]]  # bought in training
    assert sorted(s["warm_all"].positives[uid["u1"]].indices.tolist()) == sorted([iid["p1"], iid["p2"]])
    assert set(s["cold_users"].users) == {uid["u3"]}
    assert set(s["cold_items"].users) == {uid["u2"]}
    # above max_users a slice is judged on a seeded sample of its users, the same one every time
    sampled = slices(data, split, max_users=1, seed=7)
    assert len(sampled["warm"].users) == 1 and set(sampled["warm"].users) <= set(s["warm"].users)
    assert sampled["warm"].users.tolist() == slices(data, split, max_users=1, seed=7)["warm"].users.tolist()
    assert set(slices(data, split, max_users=2)["warm"].users) == set(s["warm"].users)  # not above: all


def test_every_model_is_scored_on_every_slice():
    inter, users, items = _planted()
    late = pd.DataFrame(
        [
            ("a0", "a_item2", "purchase", T0 + pd.Timedelta(days=30)),
            ("u_new", "a_item0", "purchase", T0 + pd.Timedelta(days=30)),
            ("b1", "b_item1", "purchase", T0 + pd.Timedelta(days=31)),  # b1 had not bought b_item1
        ],
        columns=inter.columns,
    )
    data = prepare_tables(pd.concat([inter, late]), users, items)
    metrics = evaluate_split(data, time_split(data, holdout_days=5), PARAMS)
    assert set(metrics) == set(MODELS)
    for model in MODELS:
        assert set(metrics[model]) == set(SLICES)
        assert metrics[model]["warm"]["users"] == 2
        assert metrics[model]["cold_users"]["users"] == 1
    # the hybrid finds a0's missing 'a' item and the cold 'a' customer's item within the top 3
    assert metrics["lightfm_hybrid"]["warm"]["recall_at_3"] == 1.0
    assert metrics["lightfm_hybrid"]["cold_users"]["recall_at_3"] == 1.0
    # family selection reads the warm slice only, and evaluates only it: the same figures
    warm_only = evaluate_split(data, time_split(data, holdout_days=5), PARAMS, models=["ease"], only=("warm",))
    assert list(warm_only["ease"]) == ["warm"] and warm_only["ease"]["warm"] == metrics["ease"]["warm"]
    with pytest.raises(ValueError, match=r"no evaluation slice \['hot'\]"):
        evaluate_split(data, time_split(data, holdout_days=5), PARAMS, models=["ease"], only=("hot",))


def test_time_decay_halves_a_weight_per_half_life():
    inter = pd.DataFrame(
        {
            "u": [0, 0],
            "i": [0, 1],
            "interaction_type": ["purchase", "purchase"],
            "occurred_at": pd.to_datetime(["2026-10-01", "2026-10-31"]),
        }
    )
    params = RecommenderParams(half_life_days=30, weight_purchase=4.0)
    w = weighted_matrix(inter, (1, 2), params).toarray()[0]
    assert w[1] == pytest.approx(4.0)  # newest: full weight
    assert w[0] == pytest.approx(2.0)  # one half-life older: half
    assert weighted_matrix(inter, (1, 2), RecommenderParams(half_life_days=0.0)).toarray()[0].tolist() == [4.0, 4.0]


def test_feature_weight_rebalances_identity_against_metadata():
    inter, users, items = _planted()
    data = prepare_tables(inter, users, items)
    light = with_feature_weight(data, 0.25)
    row = light.items.matrix[0].toarray()[0]
    n = len(light.items.ids)
    assert row.sum() == pytest.approx(1.0)
    assert row[:n].max() == pytest.approx(0.8) and row[n:].max() == pytest.approx(0.2)  # 1 : 0.25


def test_cli_evaluates_a_time_split_and_an_explicit_pair(tmp_path, capsys):
    inter, users, items = _planted()
    late = pd.DataFrame(
        [
            ("a0", "a_item2", "purchase", T0 + pd.Timedelta(days=30)),
            ("u_new", "a_item0", "purchase", T0 + pd.Timedelta(days=30)),
        ],
        columns=inter.columns,
    )
    pd.concat([inter, late]).to_csv(tmp_path / "interactions.csv", index=False)
    users.to_csv(tmp_path / "users.csv", index=False)
    items.to_parquet(tmp_path / "items.parquet")
    out = tmp_path / "metrics.json"
    common = ["--user-features", str(tmp_path / "users.csv"), "--item-features", str(tmp_path / "items.parquet")]
    small = ["--k", "3", "--components", "4", "--epochs", "20", "--seed", "3"]
    rc = main(
        [
            "recommend",
            "evaluate",
            "--interactions",
            str(tmp_path / "interactions.csv"),
            *common,
            "--holdout-days",
            "3",
            *small,
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "### warm (primary)" in printed and "| item_item |" in printed
    result = json.loads(out.read_text())
    assert result["metrics"]["lightfm_hybrid"]["cold_users"]["users"] == 1

    inter.to_csv(tmp_path / "train.csv", index=False)
    late.to_csv(tmp_path / "test.csv", index=False)
    rc = main(
        [
            "recommend",
            "evaluate",
            "--interactions",
            str(tmp_path / "train.csv"),
            *common,
            "--test",
            str(tmp_path / "test.csv"),
            *small,
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["split"]["split"] == "explicit"
    assert result["metrics"]["most_popular"]["warm"]["users"] == 1


def test_rules_cap_each_category_then_cut_to_top_n():
    from ml.recommender import cap_per_group

    # two customers' ranked candidates (item indices, best first); item -> category a=0 b=1 c=2
    group = np.array([0, 0, 0, 1, 0, 2])  # items 0..5: a a a b a c
    top = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
    valid = np.ones_like(top, dtype=bool)
    keep = cap_per_group(top, valid, group, top_n=3, max_per_group=2)
    assert top[0][keep[0]].tolist() == [0, 1, 3]  # item 2 is a third 'a'
    assert top[1][keep[1]].tolist() == [5, 4, 3]
    one_each = cap_per_group(top, valid, group, top_n=10, max_per_group=1)
    assert top[0][one_each[0]].tolist() == [0, 3, 5]
    # invalid (excluded) candidates neither appear nor use up the cap
    valid[0, 0] = False
    assert top[0][cap_per_group(top, valid, group, top_n=10, max_per_group=2)[0]].tolist() == [1, 2, 3, 5]
    assert cap_per_group(top, np.ones_like(valid), group, top_n=4, max_per_group=None).sum(axis=1).tolist() == [4, 4]
    with pytest.raises(ValueError):
        cap_per_group(top, valid, group, top_n=0, max_per_group=1)


def test_pruned_top_candidates_equal_a_full_sort_with_ties_and_exclusions():
    from ml.recommender import top_candidates

    rng = np.random.default_rng(7)
    for trial in range(110):
        rows, n, pool = rng.integers(1, 12), rng.integers(1, 400), rng.integers(1, 60)
        scores = rng.integers(0, rng.integers(2, 40), (rows, n)).astype(np.float32)  # many ties
        if trial >= 100:  # wide rows, nearly all one value: thousands of ties at the bound
            n = rng.integers(5_000, 20_000)
            scores = np.where(rng.random((rows, n)) < 0.002, rng.random((rows, n)), 0.5).astype(np.float32)
        scores[rng.random((rows, n)) < rng.random()] = -np.inf  # excluded / inactive
        # columns in a shuffled order, as recommend scores them, ties still by the item's index
        perm = rng.permutation(n) if trial % 2 else np.arange(n)
        top, top_scores, valid = top_candidates(scores[:, perm], pool, tie_key=perm)
        top = perm[top]
        expected = np.argsort(-scores, axis=1, kind="stable")[:, : min(pool, n)]  # ties: lower index
        expected_scores = np.take_along_axis(scores, expected, axis=1)
        np.testing.assert_array_equal(valid, np.isfinite(expected_scores))
        np.testing.assert_array_equal(np.where(valid, top, -1), np.where(valid, expected, -1))
        np.testing.assert_array_equal(top_scores[valid], expected_scores[valid])


def test_published_lists_fall_back_to_features_then_popularity_and_respect_consent():
    from ml.rec_lists import ListRules, published_candidates

    inter, users, items = _planted()
    users = users.assign(
        gender="U", country_code="unknown", region="unknown", age_band=users["taste"], personalization_consent=True
    )
    users = pd.concat(
        [
            users,
            pd.DataFrame(
                [
                    {
                        "customer_key": "nobody",
                        "taste": None,
                        "gender": "U",
                        "country_code": "unknown",
                        "region": "unknown",
                        "age_band": "unknown",
                        "personalization_consent": True,
                    }
                ]
            ),
        ]
    )
    users.loc[users["customer_key"] == "a1", "personalization_consent"] = False
    items = items.assign(brand="x", price_band="low", is_active=True)
    data = prepare_tables(
        inter,
        users[["customer_key", "gender", "country_code", "age_band"]],
        items[["product_id", "category", "brand", "price_band"]],
    )
    model = fit(data, data.interactions, PARAMS)
    config = ListRules(k=3, max_per_category=2, exclude_bought=True)
    recs = published_candidates(model, data, users, items, config)
    source = recs.groupby("customer_key")["source"].first()
    assert source["a0"] == "personalised"
    assert source["u_new"] == "cold_start_features"  # no history, features say taste 'a'
    assert source["nobody"] == "popularity"  # no history, no usable feature
    assert source["a1"] == "popularity"  # no consent to personalise
    # the cap: at most 2 items of one category in any list
    assert recs.groupby(["customer_key", "category"]).size().max() <= 2
    # a0's bought items are excluded; a1's history is not used at all, so popular items it bought may appear
    a0 = set(recs.loc[recs["customer_key"] == "a0", "product_id"])
    assert not a0 & {"a_item0", "a_item1"}
    popular_order = recs.loc[recs["customer_key"] == "nobody", "product_id"].tolist()
    assert recs.loc[recs["customer_key"] == "a1", "product_id"].tolist() == popular_order


def test_logged_params_rebuild_the_same_configuration():
    # the promotion gate relies on this to skip refitting a champion with the challenger's settings
    params = RecommenderParams(no_components=64, half_life_days=30.0, feature_weight=0.1, item_alpha=1e-6)
    logged = {k: str(v) for k, v in params.as_dict().items()} | {"user_features": "gender"}
    assert RecommenderParams.from_logged(logged) == params
    assert RecommenderParams.from_logged(logged | {"epochs": "5"}) != params


def test_the_budget_note_names_a_published_fit_given_fewer_epochs_than_the_evaluation():
    params = RecommenderParams(epochs=30, max_updates=40_000_000)
    # the 1m run: 21,066,322 published pairs allow 1 epoch; the sample's 436,799 pairs get all 30
    note = params.budget_note(21_066_322, 436_799)
    assert "published fit ran 1 epoch(s) over 21,066,322 pairs" in note
    assert "the evaluation's fit 30 over 436,799" in note
    assert "max_updates >= 42,132,644 gives the published fit 2" in note
    assert RecommenderParams(epochs=30, max_updates=42_132_644).epochs_for(21_066_322) == 2
    # 100k: 2.1M pairs allow 19 epochs
    assert "ran 19 epoch(s)" in params.budget_note(2_100_000, 420_000)
    # the budget leaves both fits at every epoch (the demo), or gives the published fit as many
    assert params.budget_note(300_000, 250_000) is None
    assert params.budget_note(1_300_000, 400_000) is None
    assert params.budget_note(436_799, 1_000_000) is None


def test_point_in_time_features_take_the_snapshot_before_the_holdout():
    snapshots = pd.DataFrame(
        {
            "customer_key": ["x", "x", "x", "y", "z"],
            "as_of_date": pd.to_datetime(["2026-09-01", "2026-10-01", "2026-11-01", "2026-09-01", "2026-11-01"]),
            "segment": ["New", "Loyal", "Champions", "Lost", "New"],
        }
    )
    then = features_as_of(snapshots, "customer_key", pd.Timestamp("2026-10-10"))
    # x's latest snapshot by 10 October is October's; y has only September's; z did not exist yet
    assert then.set_index("customer_key")["segment"].to_dict() == {"x": "Loyal", "y": "Lost"}
    assert "as_of_date" not in then
    # a snapshot dated the holdout's first day only saw inputs before it: it is allowed
    assert (
        features_as_of(snapshots, "customer_key", pd.Timestamp("2026-11-01"))
        .set_index("customer_key")
        .loc["x", "segment"]
        == "Champions"
    )
    assert features_as_of(snapshots, "customer_key", None).set_index("customer_key")["segment"].to_dict() == {
        "x": "Champions",
        "y": "Lost",
        "z": "New",
    }
    static = snapshots.drop(columns="as_of_date")
    assert features_as_of(static, "customer_key", pd.Timestamp("2026-10-10")) is static


def test_evaluation_reads_user_features_as_of_the_holdout_start():
    inter, users, items = _planted()
    # every user's 'segment' is 'early' before the holdout and 'late' (learnt from it) after
    days = [T0, T0 + pd.Timedelta(days=9)]
    snapshots = pd.concat(
        [users.assign(as_of_date=day, segment=label) for day, label in zip(days, ["early", "late"], strict=False)],
        ignore_index=True,
    )
    at = evaluation_as_of(inter, holdout_days=3)
    assert at == holdout_start(inter["occurred_at"], 3) == inter["occurred_at"].max().normalize() - pd.Timedelta(days=2)
    assert at < days[1]
    data = prepare_tables(inter, snapshots, items, as_of=at)
    assert "segment:early" in data.users.feature_names and "segment:late" not in data.users.feature_names
    assert "as_of_date" not in " ".join(data.users.feature_names)
    latest = prepare_tables(inter, snapshots, items)
    assert "segment:late" in latest.users.feature_names
    # an explicit pair: features as of the first test interaction; without test times, the last training one
    test = pd.DataFrame(
        {"customer_key": ["a0"], "product_id": ["a_item2"], "occurred_at": [T0 + pd.Timedelta(days=30)]}
    )
    assert evaluation_as_of(inter, test=test) == T0 + pd.Timedelta(days=30)
    assert evaluation_as_of(inter, test=test.drop(columns="occurred_at")) == inter["occurred_at"].max()


def test_rows_for_unseen_users_weigh_features_as_training_did():
    from ml.recommender import unseen_user_rows, without_identity

    inter, users, items = _planted()
    data = with_feature_weight(prepare_tables(inter, users, items), 0.25)
    expected = without_identity(data.users, np.ones(len(data.users.ids), dtype=bool)).toarray()
    frame = users.set_index("customer_key").loc[data.users.ids].reset_index()
    got = unseen_user_rows(data.users.feature_names, pl.from_pandas(frame), 0.25).toarray()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[0].sum() == pytest.approx(0.25 / 1.25)  # one feature column at weight 0.25
    # a value the model's vocabulary does not know adds nothing
    assert unseen_user_rows(data.users.feature_names, pl.DataFrame({"taste": ["c"]}), 0.25).nnz == 0


def test_a_registered_model_lists_customers_it_never_saw_from_their_features():
    from ml.rec_lists import ListRules, champion_lists_for, model_bundle, published_candidates

    inter, users, items = _planted()
    users = users.assign(
        gender="F", country_code="GB", region="Northern Europe", age_band=users["taste"], personalization_consent=True
    )
    items = items.assign(brand="x", price_band="low", is_active=True)
    features = ["gender", "country_code", "region", "age_band"]
    data = with_feature_weight(
        prepare_tables(
            inter, users[["customer_key", *features]], items[["product_id", "category", "brand", "price_band"]]
        ),
        0.5,
    )
    model = fit(data, data.interactions, PARAMS)
    config = ListRules(k=3, max_per_category=3)
    bundle = model_bundle(model, data, 3)
    assert bundle["cold_user_ids"] == ["u_new"]
    # today: a customer the model never saw (taste 'b' by age band), and a0 withdrew consent
    today = pd.concat(
        [
            users,
            pd.DataFrame(
                [
                    {
                        "customer_key": "fresh",
                        "taste": "b",
                        "gender": "F",
                        "country_code": "GB",
                        "region": "Northern Europe",
                        "age_band": "b",
                        "personalization_consent": True,
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    today.loc[today["customer_key"] == "a0", "personalization_consent"] = False
    lists = champion_lists_for(bundle, 0.5, today, items, inter, config)
    source = lists.groupby("customer_key")["source"].first()
    assert source["fresh"] == "cold_start_features" and source["u_new"] == "cold_start_features"
    assert source["a0"] == "popularity" and source["b1"] == "personalised"
    assert set(lists.loc[lists["customer_key"] == "fresh", "product_id"]) == {"b_item0", "b_item1", "b_item2"}
    # customers the model was trained on get exactly the lists it published at training time
    published = published_candidates(model, data, users, items, config)
    for customer in ("b1", "a3", "u_new"):
        mine = lists[lists["customer_key"] == customer][["rank", "product_id"]].reset_index(drop=True)
        then = published[published["customer_key"] == customer][["rank", "product_id"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, then)


def test_recommend_equals_ranking_every_item_by_its_full_score():
    """recommend() scores only eligible items, in chunks, and adds a user's bias after ranking;
    its lists must equal a plain ranking of every item by its full score (float64, user bias
    included) under the same rules: inactive and excluded items never, popularity rows, a cap of
    two per category, top 4."""
    import scipy.sparse as sp

    from ml.recommender import recommend

    rng = np.random.default_rng(11)
    n_users, n_items = 40, 300
    inter = pd.DataFrame(
        {
            "customer_key": [f"c{u}" for u in rng.integers(0, n_users, 900)],
            "product_id": [f"p{i}" for i in rng.integers(0, n_items, 900)],
            "interaction_type": rng.choice(["view", "cart", "purchase"], 900),
            "occurred_at": T0 + pd.to_timedelta(rng.integers(0, 60, 900), unit="D"),
        }
    )
    users = pd.DataFrame({"customer_key": [f"c{u}" for u in range(n_users)], "taste": rng.choice(list("xyz"), n_users)})
    items = pd.DataFrame(
        {"product_id": [f"p{i}" for i in range(n_items)], "category": rng.choice(list("abcd"), n_items)}
    )
    data = prepare_tables(inter, users, items)
    model = fit(data, data.interactions, PARAMS)
    n_users, n_items = len(data.users.ids), len(data.items.ids)
    eligible = rng.random(n_items) < 0.8
    exclude = sp.random(n_users, n_items, density=0.2, random_state=5, format="csr")
    popular = rng.random(n_users) < 0.2
    popularity = rng.random(n_items)
    group = rng.integers(0, 4, n_items)
    recs = recommend(
        model, data, exclude, eligible, k=4, chunk=7, popular_users=popular, popularity=popularity,
        item_group=group, max_per_group=2,
    )  # fmt: skip

    full = LightFMScorer(model, data)(np.arange(n_users))  # float64, every item, user bias included
    excluded = exclude.toarray() > 0
    for u, key in enumerate(data.users.ids):
        score = np.where(popular[u], popularity, full[u])
        allowed = eligible & ~excluded[u]
        ranked = [i for i in np.argsort(-score, kind="stable") if allowed[i]]
        kept, per_group = [], {}
        for i in ranked:
            if per_group.get(group[i], 0) < 2:
                per_group[group[i]] = per_group.get(group[i], 0) + 1
                kept.append(i)
            if len(kept) == 4:
                break
        mine = recs[recs["customer_key"] == key].sort_values("rank")
        assert mine["rank"].tolist() == list(range(1, len(kept) + 1))
        assert mine["product_id"].tolist() == [data.items.ids[i] for i in kept], key
        np.testing.assert_allclose(mine["score"].to_numpy(), score[kept], rtol=1e-5)
        assert set(mine["source"]) == {"popularity" if popular[u] else "personalised"}
    # chunks ranked in parallel threads give the same frame as one at a time, in the same row order
    for threads in (1, 3):
        again = recommend(
            model, data, exclude, eligible, k=4, chunk=7, popular_users=popular, popularity=popularity,
            item_group=group, max_per_group=2, threads=threads,
        )  # fmt: skip
        pd.testing.assert_frame_equal(again, recs)


def test_recommend_ranks_users_with_identical_lists_once_and_gives_each_the_same_rows(monkeypatch):
    """Cold users with the same features and popular users without exclusions are ranked once
    per group (list_owners); the frame must equal ranking every user on its own, row for row."""
    import scipy.sparse as sp

    from ml import recommender
    from ml.recommender import list_owners, recommend

    rng = np.random.default_rng(5)
    n_warm, n_cold, n_items = 30, 40, 200
    inter = pd.DataFrame(
        {
            "customer_key": [f"w{u:02d}" for u in rng.integers(0, n_warm, 700)],
            "product_id": [f"p{i:03d}" for i in rng.integers(0, n_items, 700)],
            "interaction_type": rng.choice(["view", "cart", "purchase"], 700),
            "occurred_at": T0 + pd.to_timedelta(rng.integers(0, 60, 700), unit="D"),
        }
    )
    keys = [f"w{u:02d}" for u in range(n_warm)] + [f"c{u:02d}" for u in range(n_cold)]
    users = pd.DataFrame({"customer_key": keys, "taste": rng.choice(list("xyz"), len(keys))})
    items = pd.DataFrame(
        {"product_id": [f"p{i:03d}" for i in range(n_items)], "category": rng.choice(list("abcd"), n_items)}
    )
    data = prepare_tables(inter, users, items)
    model = fit(data, data.interactions, PARAMS)
    n_users = len(data.users.ids)
    cold = np.array([k.startswith("c") for k in data.users.ids])
    popular = rng.random(n_users) < 0.3
    # no exclusions for cold users (no history) and half the popular ones: the others keep their own lists
    exclude = sp.random(n_users, n_items, density=0.05, random_state=2, format="lil")
    exclude[np.flatnonzero(cold)] = 0
    exclude[np.flatnonzero(popular & ~cold)[::2]] = 0
    exclude = exclude.tocsr()
    exclude.eliminate_zeros()
    kwargs = {
        "k": 4, "chunk": 7, "cold_users": cold, "popular_users": popular, "popularity": rng.random(n_items),
        "item_group": rng.integers(0, 4, n_items), "max_per_group": 2,
    }  # fmt: skip
    eligible = rng.random(n_items) < 0.9

    shared = recommend(model, data, exclude, eligible, **kwargs)
    calls = []
    monkeypatch.setattr(recommender, "list_owners", lambda *a: calls.append(list_owners(*a)) or np.arange(n_users))
    alone = recommend(model, data, exclude, eligible, **kwargs)
    owners = calls[0]
    # the sharing happened: 40 cold users of 3 tastes, one popular list
    assert len(np.unique(owners)) <= n_warm + 3 + 1
    shares = popular & (np.diff(exclude.indptr) == 0)
    assert shares.sum() > 1 and (owners[shares] == np.flatnonzero(shares)[0]).all()
    pd.testing.assert_frame_equal(shared, alone)
    for threads in (1, 3):
        monkeypatch.undo()
        pd.testing.assert_frame_equal(recommend(model, data, exclude, eligible, threads=threads, **kwargs), alone)


def test_shared_rows_copies_the_owner_rows_in_user_order():
    from ml.recommender import shared_rows

    # users 0 and 2 were ranked: 0 has two rows, 2 has one; 1 and 3 take 0's list, 4 takes 2's
    users = np.array([0, 0, 2])
    out_users, rows = shared_rows(users, np.array([0, 0, 2, 0, 2]))
    assert out_users.tolist() == [0, 0, 1, 1, 2, 3, 3, 4]
    assert rows.tolist() == [0, 1, 0, 1, 2, 0, 1, 2]


def test_a_slice_with_no_users_logs_no_metrics():
    # what broke: empty slices logged ~40 NaN metrics to MLflow per run
    from ml.rec_evaluation import empty_slices, evaluate_per_user, flatten_metrics, model_metrics
    from ml.tracking import refuse_undefined

    inter, users, items = _planted()
    # a holdout of warm users only, buying items seen in training: no cold user, no cold item
    late = pd.DataFrame(
        [
            ("a0", "a_item2", "purchase", T0 + pd.Timedelta(days=30)),
            ("b1", "b_item1", "purchase", T0 + pd.Timedelta(days=31)),
        ],
        columns=inter.columns,
    )
    data = prepare_tables(pd.concat([inter, late]), users, items)
    evaluation, per_user = evaluate_per_user(data, time_split(data, holdout_days=5), PARAMS)
    assert empty_slices(evaluation) == ["cold_users", "cold_items"]
    assert np.isnan(evaluation["lightfm_hybrid"]["cold_users"]["ndcg_at_3"])  # the raw evaluation keeps NaN
    flat = flatten_metrics(evaluation)
    assert all(np.isfinite(v) for v in flat.values())
    assert not [k for k in flat if k.startswith(("cold_users_", "cold_items_"))]
    assert flat["users"] == 2 and flat["warm_all_most_popular_users"] == 2
    baseline = model_metrics(evaluation, "recently_popular")
    assert not [k for k in baseline if k.startswith(("cold_users_", "cold_items_"))] and baseline["users"] == 2
    # per-user NDCG, paired by user index, averages to the slice's metric
    warm = per_user["lightfm_hybrid"]["warm"]
    assert len(warm) == 2 and warm.mean() == pytest.approx(evaluation["lightfm_hybrid"]["warm"]["ndcg_at_3"])
    assert warm.index.tolist() == per_user["most_popular"]["warm"].index.tolist()
    # and a NaN that got through anyway is refused before it reaches MLflow
    with pytest.raises(ValueError, match="1 undefined metric"):
        refuse_undefined({"ndcg_at_10": 0.2, "cold_users_auc": float("nan")}, "lightfm_hybrid")


def test_a_holdout_without_purchases_names_why_no_model_can_be_evaluated():
    # a clickstream-only shop: views and carts, no order yet
    inter = pd.DataFrame(
        [("u1", "p1", "view", "2026-10-01"), ("u2", "p2", "cart", "2026-10-09")],
        columns=["customer_key", "product_id", "interaction_type", "occurred_at"],
    ).assign(occurred_at=lambda f: pd.to_datetime(f["occurred_at"]))
    from ml.rec_evaluation import holdout_shortfall

    reason = holdout_shortfall(inter, holdout_days=5)
    assert reason == (
        "a 5-day holdout from 2026-10-05 leaves 1 training interactions and 0 purchases to test on: "
        "a model cannot be evaluated"
    )
    assert holdout_shortfall(inter.iloc[:0], holdout_days=5) == "no customer-product interaction yet"
    with pytest.raises(ValueError, match="0 purchases to test on"):
        time_split(prepare_tables(inter), holdout_days=5)
