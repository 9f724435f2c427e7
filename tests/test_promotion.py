"""The recommender's promotion gate sees noise (ml/promotion.py): a paired bootstrap of per-user
NDCG@10 on the same users, a minimum number of users, and ties that keep the champion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.promotion import (
    GateRule,
    best_baseline,
    identical_retrain,
    judge_challenger,
    judge_first_model,
    judge_refresh,
    paired_bootstrap,
)

RULE = GateRule(min_users=200, confidence=0.95, resamples=2000, seed=42)


def per_user(values, start: int = 0) -> pd.Series:
    """Per-user NDCG values indexed by user index, as ml.rec_evaluation.evaluate_per_user gives them."""
    values = np.asarray(values, dtype=float)
    return pd.Series(values, index=pd.Index(np.arange(start, start + len(values)), name="u"))


def ndcg_like(rng: np.random.Generator, n: int, hit_rate: float) -> np.ndarray:
    """Per-user NDCG of a model that finds something for `hit_rate` of users: mostly zeros."""
    return np.where(rng.random(n) < hit_rate, rng.uniform(0.2, 1.0, n), 0.0)


def test_a_clear_winner_on_enough_users_is_promoted():
    rng = np.random.default_rng(1)
    champion = ndcg_like(rng, 400, 0.10)
    challenger = ndcg_like(rng, 400, 0.40)
    verdict = judge_challenger(per_user(challenger), per_user(champion), RULE, "champion version 1")
    assert verdict.promote
    assert verdict.users == 400
    assert verdict.interval.low > 0
    assert verdict.interval.mean_difference == pytest.approx(challenger.mean() - champion.mean())
    assert verdict.reason.startswith("wins over champion version 1 by more than noise: promoted")


def test_a_challenger_from_the_same_distribution_is_noise_and_keeps_the_champion():
    rng = np.random.default_rng(2)
    challenger = ndcg_like(rng, 300, 0.20)
    champion = ndcg_like(rng, 300, 0.20)
    # by chance the challenger's mean is higher: the old gate (challenger >= champion) promoted it
    assert challenger.mean() > champion.mean()
    verdict = judge_challenger(per_user(challenger), per_user(champion), RULE, "champion version 1")
    assert not verdict.promote
    assert verdict.interval.low <= 0 <= verdict.interval.high
    assert "no better than champion version 1 beyond noise: champion kept" in verdict.reason


def test_a_tie_keeps_the_champion():
    # what broke: two identical retrains tied and the newer one was counted as a promotion
    values = ndcg_like(np.random.default_rng(3), 250, 0.3)
    verdict = judge_challenger(per_user(values), per_user(values.copy()), RULE, "champion version 4")
    assert not verdict.promote
    assert (verdict.interval.low, verdict.interval.mean_difference, verdict.interval.high) == (0.0, 0.0, 0.0)
    assert verdict.reason.startswith("tie with champion version 4 (the same NDCG@10 for every user): champion kept")


def test_a_worse_challenger_keeps_the_champion():
    rng = np.random.default_rng(4)
    champion = ndcg_like(rng, 300, 0.4)
    challenger = ndcg_like(rng, 300, 0.1)
    verdict = judge_challenger(per_user(challenger), per_user(champion), RULE, "champion version 2")
    assert not verdict.promote and verdict.interval.high < 0
    assert "worse than champion version 2 by more than noise" in verdict.reason


def test_fewer_than_min_users_keeps_the_champion_and_names_the_count():
    # what broke: 4 warm users decided a promotion (NDCG 0.000 against 0.072 for recently popular)
    rng = np.random.default_rng(5)
    champion = np.zeros(150)
    challenger = ndcg_like(rng, 150, 0.9)  # a huge win, on too few users to trust
    verdict = judge_challenger(per_user(challenger), per_user(champion), RULE, "champion version 1")
    assert not verdict.promote
    assert verdict.users == 150 and verdict.interval is None
    assert verdict.reason == (
        "only 150 users evaluated on the warm slice, fewer than min_users=200: too few to tell the "
        "challenger from champion version 1, champion kept"
    )


def test_only_users_evaluated_for_both_models_are_paired():
    # users 0..249 for the challenger, 50..299 for the champion: 200 in common
    rng = np.random.default_rng(6)
    challenger = per_user(ndcg_like(rng, 250, 0.5), start=0)
    champion = per_user(np.zeros(250), start=50)
    verdict = judge_challenger(challenger, champion, RULE, "champion version 1")
    assert verdict.users == 200
    assert verdict.interval.challenger_mean == pytest.approx(challenger.loc[50:249].mean())


def test_the_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(7)
    a, b = ndcg_like(rng, 500, 0.3), ndcg_like(rng, 500, 0.25)
    first = paired_bootstrap(a, b, 0.95, 2000, seed=11)
    again = paired_bootstrap(a, b, 0.95, 2000, seed=11)
    other = paired_bootstrap(a, b, 0.95, 2000, seed=12)
    assert first == again
    assert (other.low, other.high) != (first.low, first.high)
    assert first.low < first.mean_difference < first.high
    # a constant difference has no spread: every resampled mean is that constant
    constant = paired_bootstrap(np.full(10, 0.5), np.full(10, 0.25), 0.95, 500, seed=0)
    assert (constant.low, constant.mean_difference, constant.high) == (0.25, 0.25, 0.25)


@pytest.mark.parametrize(
    ("challenger", "opponent", "message"),
    [
        ([0.1, 0.2], [0.1], "one length"),
        ([], [], "no paired user"),
        ([0.1, np.nan], [0.1, 0.2], "finite"),
    ],
)
def test_the_bootstrap_refuses_values_that_do_not_pair(challenger, opponent, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(np.array(challenger), np.array(opponent), 0.95, 200, seed=0)


def test_a_first_model_worse_than_the_best_baseline_is_not_published():
    rng = np.random.default_rng(8)
    baseline = ndcg_like(rng, 300, 0.4)
    model = ndcg_like(rng, 300, 0.1)
    verdict = judge_first_model(per_user(model), per_user(baseline), RULE, "recently_popular")
    assert not verdict.promote and verdict.opponent == "baseline recently_popular"
    assert verdict.reason.startswith(
        "no champion yet and the model is worse than baseline recently_popular by more than noise"
    )


def test_a_first_model_within_noise_of_the_baseline_becomes_champion():
    rng = np.random.default_rng(9)
    baseline = ndcg_like(rng, 300, 0.2)
    model = ndcg_like(rng, 300, 0.2)
    verdict = judge_first_model(per_user(model), per_user(baseline), RULE, "most_popular")
    assert verdict.promote and verdict.interval.low <= 0 <= verdict.interval.high
    assert verdict.reason.startswith("first champion: not worse than baseline most_popular by more than noise")


def test_a_first_model_on_too_few_users_is_not_published():
    verdict = judge_first_model(per_user(np.ones(4)), per_user(np.zeros(4)), RULE, "recently_popular")
    assert not verdict.promote and verdict.users == 4
    assert "only 4 users evaluated on the warm slice, fewer than min_users=200" in verdict.reason


def test_the_best_baseline_is_the_simple_one_with_the_higher_mean():
    metrics = {
        "lightfm_hybrid": {"warm": {"ndcg_at_10": 0.9}},
        "item_item": {"warm": {"ndcg_at_10": 0.5}},  # not a simple baseline: never published as one
        "most_popular": {"warm": {"ndcg_at_10": 0.034}},
        "recently_popular": {"warm": {"ndcg_at_10": 0.096}},
    }
    assert best_baseline(metrics, "warm", "ndcg_at_10") == "recently_popular"
    metrics["recently_popular"]["warm"]["ndcg_at_10"] = 0.034  # a tie goes to the first listed
    assert best_baseline(metrics, "warm", "ndcg_at_10") == "most_popular"


def test_an_identical_retrain_is_a_tie_and_a_refresh_on_newer_data_is_judged_against_the_baseline():
    values = per_user(ndcg_like(np.random.default_rng(10), 300, 0.3))
    same = identical_retrain(values, RULE, "champion version 3")
    assert not same.promote and same.users == 300
    assert same.reason.startswith("identical retrain of champion version 3 (same configuration and training data")
    refresh = judge_refresh(values, per_user(np.zeros(300)), RULE, "most_popular", "champion version 3")
    assert refresh.promote
    assert refresh.reason.startswith(
        "refresh of champion version 3's configuration on newer data: not worse than baseline most_popular"
    )
    thin = judge_refresh(values.iloc[:20], per_user(np.zeros(20)), RULE, "most_popular", "champion version 3")
    assert not thin.promote and "only 20 users" in thin.reason and thin.reason.endswith("champion kept")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("min_users", 0, "min_users"), ("confidence", 1.0, "confidence"), ("resamples", 10, "resamples")],
)
def test_a_gate_rule_refuses_settings_that_cannot_judge(field, value, message):
    with pytest.raises(ValueError, match=message):
        GateRule(**{field: value})
