"""The recommender's promotion gate: a challenger replaces the champion only when it wins by more
than noise, on enough users.

Both models are scored on the same users of the same split (the warm slice, NDCG@10 per user,
ml/rec_evaluation.evaluate_per_user). The gate takes each user's difference (challenger minus
opponent) and a seeded paired bootstrap of its mean: users are drawn with replacement
`resamples` times and the percentile interval of the resampled means is the `confidence`
interval of the mean difference.

- Against a champion, the challenger is promoted only when at least `min_users` users were
  evaluated AND the interval's lower bound is above 0 (it wins by more than noise). A tie, an
  identical retrain, a difference within noise or too few users keep the champion.
- With no champion yet, the first model is compared with the best simple baseline (most popular
  or recently popular, whichever has the higher mean). It becomes champion when at least
  `min_users` users were evaluated and it is not worse than that baseline by more than noise
  (the interval's upper bound is at least 0). Otherwise the baseline's lists are published,
  marked as such (docs/recommender.md, "Promotion gate").
- A challenger with the champion's own configuration is the champion refitted: on the same
  training data it is an identical retrain and keeps the champion (a tie, not a promotion); on
  newer data it is a refresh, judged like a first model against the best baseline (the champion
  refitted on the same split would be the challenger itself, so there is nothing to pair with).

Pure numpy and pandas: nothing here reads MLflow or Dagster (ml/registry.py records the decision).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# the default of TESSERA_PROMOTION_MIN_USERS: below this many warm users a difference in mean
# NDCG@10 of a few hundredths is mostly noise (4 users once decided a promotion)
DEFAULT_MIN_USERS = 200
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
# the simple baselines a first model must not lose to (both in ml/rec_baselines.py)
SIMPLE_BASELINES = ("most_popular", "recently_popular")
# largest (resamples x users) block of drawn indices held at once: 32 MB of int64
_BLOCK_CELLS = 2**22


@dataclass(frozen=True)
class GateRule:
    min_users: int = DEFAULT_MIN_USERS
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 42

    def __post_init__(self):
        if self.min_users < 1:
            raise ValueError(f"min_users must be at least 1, got {self.min_users}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.resamples < 100:
            raise ValueError(f"resamples must be at least 100, got {self.resamples}")


@dataclass(frozen=True)
class Interval:
    """The paired bootstrap of mean(challenger - opponent) over `users` users."""

    users: int
    challenger_mean: float
    opponent_mean: float
    mean_difference: float
    low: float
    high: float
    confidence: float

    def describe(self) -> str:
        return (
            f"mean NDCG@10 {self.challenger_mean:.4f} vs {self.opponent_mean:.4f}, difference "
            f"{self.mean_difference:+.4f} ({self.confidence:.0%} CI {self.low:+.4f} to {self.high:+.4f}) "
            f"over {self.users} users"
        )


def paired_bootstrap(challenger, opponent, confidence: float, resamples: int, seed: int) -> Interval:
    """Seeded percentile bootstrap of the mean paired difference (same seed, same interval)."""
    a = np.asarray(challenger, dtype=np.float64)
    b = np.asarray(opponent, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired values need two 1-d arrays of one length, got shapes {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("no paired user to compare")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired values must be finite (an evaluated user always has an NDCG)")
    diff = a - b
    n = len(diff)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, _BLOCK_CELLS // n)
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        means[start : start + rows] = diff[rng.integers(0, n, size=(rows, n))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(n, float(a.mean()), float(b.mean()), float(diff.mean()), float(low), float(high), confidence)


def paired(challenger: pd.Series, opponent: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Two models' per-user values on the users both were evaluated on, in user order."""
    users = challenger.index.intersection(opponent.index).sort_values()
    return challenger.loc[users].to_numpy(dtype=np.float64), opponent.loc[users].to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class Verdict:
    promote: bool
    opponent: str  # "champion version 3", "baseline recently_popular"
    users: int
    interval: Interval | None  # None when too few users to bootstrap
    reason: str
    min_users: int


def too_few(users: int, rule: GateRule) -> bool:
    return users < rule.min_users


def judge_challenger(challenger: pd.Series, champion: pd.Series, rule: GateRule, champion_label: str) -> Verdict:
    """Promote only on at least rule.min_users paired users with the interval's lower bound > 0."""
    a, b = paired(challenger, champion)
    if too_few(len(a), rule):
        return Verdict(
            False,
            champion_label,
            len(a),
            None,
            f"only {len(a)} users evaluated on the warm slice, fewer than min_users={rule.min_users}: "
            f"too few to tell the challenger from {champion_label}, champion kept",
            rule.min_users,
        )
    interval = paired_bootstrap(a, b, rule.confidence, rule.resamples, rule.seed)
    if interval.low > 0:
        verdict, promote = f"wins over {champion_label} by more than noise: promoted", True
    elif np.array_equal(a, b):
        verdict, promote = f"tie with {champion_label} (the same NDCG@10 for every user): champion kept", False
    elif interval.high < 0:
        verdict, promote = f"worse than {champion_label} by more than noise: champion kept", False
    else:
        verdict, promote = f"no better than {champion_label} beyond noise: champion kept", False
    return Verdict(promote, champion_label, len(a), interval, f"{verdict}; {interval.describe()}", rule.min_users)


def best_baseline(metrics: dict[str, dict[str, dict[str, float]]], slice_name: str, metric: str) -> str:
    """The simple baseline with the highest mean `metric` on the slice (ties: the first listed)."""
    present = [b for b in SIMPLE_BASELINES if b in metrics]
    if not present:
        raise ValueError(f"none of the simple baselines {SIMPLE_BASELINES} was evaluated")
    return max(present, key=lambda b: (metrics[b][slice_name][metric], -present.index(b)))


def judge_first_model(model: pd.Series, baseline: pd.Series, rule: GateRule, baseline_name: str) -> Verdict:
    """With no champion: the model becomes champion on at least rule.min_users paired users when
    it is not worse than the baseline by more than noise (upper bound >= 0); otherwise the
    baseline's lists are published."""
    label = f"baseline {baseline_name}"
    a, b = paired(model, baseline)
    if too_few(len(a), rule):
        return Verdict(
            False,
            label,
            len(a),
            None,
            f"no champion yet and only {len(a)} users evaluated on the warm slice, fewer than "
            f"min_users={rule.min_users}: too few to tell the model from {label}, whose lists are published",
            rule.min_users,
        )
    interval = paired_bootstrap(a, b, rule.confidence, rule.resamples, rule.seed)
    if interval.high < 0:
        return Verdict(
            False,
            label,
            len(a),
            interval,
            f"no champion yet and the model is worse than {label} by more than noise: the baseline's lists "
            f"are published; {interval.describe()}",
            rule.min_users,
        )
    return Verdict(
        True,
        label,
        len(a),
        interval,
        f"first champion: not worse than {label} by more than noise; {interval.describe()}",
        rule.min_users,
    )


def judge_refresh(
    model: pd.Series, baseline: pd.Series, rule: GateRule, baseline_name: str, champion_label: str
) -> Verdict:
    """The champion's configuration retrained on newer data: it replaces the champion under the
    first-model rule (enough users, not worse than the best baseline by more than noise)."""
    label = f"baseline {baseline_name}"
    a, b = paired(model, baseline)
    refresh = f"refresh of {champion_label}'s configuration on newer data"
    if too_few(len(a), rule):
        reason = (
            f"{refresh}: only {len(a)} users evaluated on the warm slice, fewer than min_users={rule.min_users}: "
            "champion kept"
        )
        return Verdict(False, label, len(a), None, reason, rule.min_users)
    interval = paired_bootstrap(a, b, rule.confidence, rule.resamples, rule.seed)
    if interval.high < 0:
        reason = f"{refresh}: worse than {label} by more than noise, champion kept; {interval.describe()}"
        return Verdict(False, label, len(a), interval, reason, rule.min_users)
    reason = f"{refresh}: not worse than {label} by more than noise, promoted; {interval.describe()}"
    return Verdict(True, label, len(a), interval, reason, rule.min_users)


def identical_retrain(model: pd.Series, rule: GateRule, champion_label: str) -> Verdict:
    """Same configuration, same training data: the same model again. Never a promotion."""
    users = len(model)
    return Verdict(
        False,
        champion_label,
        users,
        None,
        f"identical retrain of {champion_label} (same configuration and training data, {users} users evaluated): "
        "a tie, champion kept",
        rule.min_users,
    )
