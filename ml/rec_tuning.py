"""Honest tuning of the recommender families (issue 37): chosen on validation, tested once.

Protocol:

1. The split: training | test, either a time split (test = purchases of the last N days) or an
   explicit training file and test file.
2. Validation is carved out of the training data: its last `validation_days` calendar days.
   Every trial is fitted on training-before-validation and scored on the validation purchases;
   the test is not passed to the search at all (`search` never receives it).
3. Trials: first the default configuration (RecommenderParams) of every family, then every
   other point of each family's grid (FAMILY_SPACES; without metadata features LightFM's
   feature_weight is left out, it cannot change the model), all families' points in one seeded
   random order, so a trial or time budget samples the whole space fairly, not its first rows.
   The defaults always run, whatever the budgets: they are what the winner is measured against.
4. The winner is the trial with the best warm NDCG@k on validation (ties: the earlier trial, so
   a default keeps its place against an equal search point). Since every default is a trial, the
   winner is never worse than a default on validation; `search` checks it.
5. The winner, every family's default and every family's best trial are refitted on the whole
   training data and scored on the test once, for the report. Nothing is chosen on the test.

MLflow: one parent run (the split, the budgets, the winner, its test metrics as test_<metric> and
each family default's as test_default_<family>_<metric>) with one nested run per trial (family,
its parameters, validation metrics as val_<metric>).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from ml.rec_evaluation import (
    MODELS,
    PRIMARY_SLICE,
    Split,
    evaluate_split,
    evaluation_as_of,
    explicit_split,
    holdout_start,
    model_metrics,
    slices,
    time_split,
    typed_tables,
)
from ml.rec_features import TypingOptions
from ml.recommender import RecData, RecommenderParams
from ml.tracking import TUNING, experiment_for, new_run

# the LightFM hybrid's search space: loss, components, learning rate, epochs, feature weighting (and decay)
DEFAULT_SPACE = {
    "loss": ["warp", "bpr"],
    "no_components": [32, 64],
    "learning_rate": [0.05],
    "epochs": [30],
    "feature_weight": [0.03, 0.1, 0.3, 1.0],
    "half_life_days": [0.0, 30.0],
}

# each family's grid over RecommenderParams fields; a family with an empty grid runs its default
# only (the popularity baselines are reference points, item-item has no parameter to search)
FAMILY_SPACES: dict[str, dict[str, list]] = {
    "lightfm_hybrid": DEFAULT_SPACE,
    "lightfm_ids_only": {k: v for k, v in DEFAULT_SPACE.items() if k != "feature_weight"},
    "ease": {"ease_lambda": [10.0, 50.0, 200.0, 500.0, 1000.0, 3000.0]},
    "ease_recent": {
        "ease_lambda": [200.0, 500.0],
        "ease_half_life_days": [0.0, 30.0, 90.0],
        "ease_recent_weight": [0.003, 0.01, 0.03, 0.1],
    },
    "als": {"als_factors": [32, 64, 128], "als_regularization": [0.01, 0.1, 1.0], "als_alpha": [1.0, 10.0]},
    "item_item": {},
    "recently_popular": {},
    "most_popular": {},
}
# the learned families, then the two popularity baselines as reference points
DEFAULT_FAMILIES = ("lightfm_hybrid", "ease", "ease_recent", "als", "item_item", "recently_popular", "most_popular")
# validation days when the test is an explicit file (a time split uses its own holdout days)
DEFAULT_VALIDATION_DAYS = 21

# short names of parameters in trial labels
_SHORT = {
    "no_components": "components",
    "learning_rate": "lr",
    "half_life_days": "half_life",
    "ease_lambda": "lambda",
    "als_factors": "factors",
    "als_regularization": "reg",
    "als_alpha": "alpha",
    "ease_half_life_days": "history_half_life",
    "ease_recent_weight": "recent_weight",
}


class TuningError(ValueError):
    """Input the tuning cannot work with (a carve-out without data, a budget below the defaults)."""


def trials(space: dict[str, list]) -> list[dict]:
    """The full grid, in a fixed order."""
    names = sorted(space)
    return [dict(zip(names, values, strict=False)) for values in itertools.product(*(space[n] for n in names))]


@dataclass(frozen=True)
class Trial:
    number: int  # position in the plan, from 0: the defaults are 0 .. families - 1
    family: str
    overrides: dict  # the family's searched fields and their values (the default's: its defaults)
    default: bool

    def params(self, base: RecommenderParams) -> RecommenderParams:
        return replace(base, **self.overrides)

    def label(self) -> str:
        values = " ".join(f"{_SHORT.get(k, k)}={v:g}" if isinstance(v, float) else f"{_SHORT.get(k, k)}={v}"
                          for k, v in self.overrides.items())  # fmt: skip
        return " ".join(p for p in (self.family, values, "(default)" if self.default else "") if p)


def plan(
    families: list[str] | tuple[str, ...],
    base: RecommenderParams,
    seed: int,
    max_trials: int | None = None,
    spaces: dict[str, dict[str, list]] = FAMILY_SPACES,
) -> list[Trial]:
    """Every family's default first (in `families` order), then the other grid points of all
    families in one seeded random order; at most `max_trials` in all (never fewer than the defaults)."""
    unknown = [f for f in families if f not in MODELS]
    if unknown or not families:
        raise TuningError(f"unknown famil(ies) {unknown or families!r}; known: {', '.join(MODELS)}")
    if len(set(families)) != len(families):
        raise TuningError(f"a family is named twice in {list(families)}")
    if max_trials is not None and max_trials < len(families):
        raise TuningError(
            f"--max-trials {max_trials} is fewer than the {len(families)} default configurations (one per "
            f"family: {', '.join(families)}); the defaults always run"
        )
    defaults = []
    searched = []
    for family in families:
        space = spaces.get(family, {})
        # labels name the parameters in the space's order
        default = {name: getattr(base, name) for name in space}
        defaults.append((family, default))
        searched += [(family, {name: point[name] for name in space}) for point in trials(space) if point != default]
    order = np.random.default_rng(seed).permutation(len(searched))
    chosen = defaults + [searched[n] for n in order]
    if max_trials is not None:
        chosen = chosen[:max_trials]
    return [
        Trial(number=n, family=family, overrides=overrides, default=n < len(defaults))
        for n, (family, overrides) in enumerate(chosen)
    ]


def searchable(spaces: dict[str, dict[str, list]], data: RecData) -> dict[str, dict[str, list]]:
    """The spaces without a parameter that cannot change a model on this data: without any user
    or item metadata feature, LightFM's feature_weight (with_feature_weight leaves such data as it
    is, so its four values would be four runs of one model)."""
    if any(len(space.feature_names) > len(space.ids) for space in (data.users, data.items)):
        return spaces
    return {family: {k: v for k, v in space.items() if k != "feature_weight"} for family, space in spaces.items()}


@dataclass
class TuningSplits:
    """The data of one tuning: validation (carved from training) and test, each its own RecData
    (features as of its own start, so neither sees a feature computed from its period)."""

    validation_data: RecData
    validation: Split
    test_data: RecData
    test: Split
    validation_days: int
    features: list = field(default_factory=list)  # ml.rec_features.ColumnChoice of each feature column

    def describe(self) -> dict:
        return {
            "test": self.test.describe(),
            "validation": {**self.validation.describe(), "validation_days": self.validation_days},
        }


def carve_validation(train: pd.DataFrame, validation_days: int) -> pd.Timestamp:
    """The start of the validation period: midnight starting the last `validation_days` days of
    the training interactions. Raises TuningError naming the dates and counts when the carve-out
    leaves no training interaction before it or no purchase in it."""
    if validation_days < 1:
        raise TuningError(f"--validation-days must be >= 1, got {validation_days}")
    times = pd.to_datetime(train["occurred_at"]) if "occurred_at" in train else pd.Series(dtype="datetime64[ns]")
    if len(train) == 0 or times.isna().all():
        raise TuningError(
            "the training interactions have no occurred_at times: a validation carve-out of the last days needs them"
        )
    start = holdout_start(times, validation_days)
    before = times < start
    kind = train["interaction_type"] if "interaction_type" in train else pd.Series("purchase", index=train.index)
    kept, purchases = int(before.sum()), int((~before & (kind == "purchase")).sum())
    if kept == 0 or purchases == 0:
        raise TuningError(
            f"--validation-days {validation_days}: the training data runs from {times.min().date()} to "
            f"{times.max().date()}; a validation carve-out from {start.date()} leaves {kept} training "
            f"interactions before it and {purchases} purchases in it to validate on. "
            "Choose fewer validation days (or give more training data)."
        )
    return start


def tuning_splits(
    interactions: pd.DataFrame,
    *,
    test: pd.DataFrame | None = None,
    holdout_days: int | None = None,
    validation_days: int | None = None,
    user_features: pd.DataFrame | None = None,
    item_features: pd.DataFrame | None = None,
    typing: TypingOptions | None = None,
    sources: tuple[str, str] = ("user features", "item features"),
) -> TuningSplits:
    """The test split (an explicit `test` file, or the last `holdout_days` of `interactions`) and
    the validation split carved from its training part (default: the holdout days, or
    DEFAULT_VALIDATION_DAYS with an explicit test). Feature columns are typed by ml.rec_features
    (`typing`; FeatureTypeError names a refused column)."""
    if (test is None) == (holdout_days is None):
        raise TuningError("give either an explicit test file or holdout days, not both or neither")
    if validation_days is None:
        validation_days = holdout_days or DEFAULT_VALIDATION_DAYS
    test_data, features = typed_tables(
        interactions,
        user_features,
        item_features,
        extra_interactions=test,
        as_of=evaluation_as_of(interactions, holdout_days, test),
        typing=typing,
        sources=sources,
    )
    test_split = explicit_split(test_data, test) if test is not None else time_split(test_data, holdout_days)
    train = test_split.train[["customer_key", "product_id", "interaction_type", "occurred_at"]]
    start = carve_validation(train, validation_days)
    validation_data, _ = typed_tables(train, user_features, item_features, as_of=start, typing=typing, sources=sources)
    validation = time_split(validation_data, validation_days)
    params = RecommenderParams()
    warm = slices(validation_data, validation, params.eval_max_users, params.seed)[PRIMARY_SLICE]
    if len(warm.users) == 0:
        raise TuningError(
            f"--validation-days {validation_days}: the {len(validation.test)} validation purchases from "
            f"{start.date()} include none by a customer with earlier history of a product they had not "
            "bought before: the warm slice tuning selects on would be empty. Choose more validation days."
        )
    return TuningSplits(validation_data, validation, test_data, test_split, validation_days, features)


@dataclass
class TrialResult:
    trial: Trial
    metrics: dict[str, float]  # validation: primary slice plain, others <slice>_<metric>
    seconds: float
    run_id: str | None = None


@dataclass
class SearchResult:
    results: list[TrialResult]
    planned: int
    stopped_by: str | None  # "time budget" when trials were left unstarted, else None
    seconds: float
    key: str  # the selection metric, ndcg_at_<k>

    @property
    def winner(self) -> TrialResult:
        return max(self.results, key=lambda r: (r.metrics[self.key], -r.trial.number))

    @property
    def defaults(self) -> list[TrialResult]:
        return [r for r in self.results if r.trial.default]

    def best_of(self, family: str) -> TrialResult:
        return max(
            (r for r in self.results if r.trial.family == family),
            key=lambda r: (r.metrics[self.key], -r.trial.number),
        )


def _progress_line(n: int, total: int, elapsed: float, budget: float | None, result, best, key: str) -> str:
    k = key.rsplit("_", 1)[-1]
    limit = f"budget {budget:g} s" if budget is not None else "no time budget"
    return (
        f"[trial {n}/{total}, {elapsed:.0f} s elapsed, {limit}] {result.trial.label()}: "
        f"val NDCG@{k} {result.metrics[key]:.4f} (best so far: {best.trial.label()} {best.metrics[key]:.4f})"
    )


def search(
    data: RecData,
    validation: Split,
    base: RecommenderParams,
    planned: list[Trial],
    time_budget: float | None = None,
    progress: TextIO | None = None,
    on_trial=None,
) -> SearchResult:
    """Run the planned trials on the validation split: every default, then search points until
    the plan ends or `time_budget` seconds have passed (no new trial starts after it). One line
    per trial to `progress`; `on_trial(result)` after each (MLflow logging)."""
    key = f"ndcg_at_{base.k}"
    started = time.perf_counter()
    results: list[TrialResult] = []
    stopped_by = None
    for trial in planned:
        if not trial.default and time_budget is not None and time.perf_counter() - started >= time_budget:
            stopped_by = "time budget"
            break
        params = trial.params(base)
        began = time.perf_counter()
        evaluation = evaluate_split(data, validation, params, models=[trial.family])
        result = TrialResult(trial, model_metrics(evaluation, trial.family), time.perf_counter() - began)
        if key not in result.metrics:
            raise TuningError(f"trial {trial.label()} has no validation {key}: no warm user was evaluated")
        results.append(result)
        if on_trial is not None:
            on_trial(result)
        if progress is not None:
            best = max(results, key=lambda r: (r.metrics[key], -r.trial.number))
            line = _progress_line(
                len(results), len(planned), time.perf_counter() - started, time_budget, result, best, key
            )
            print(line, file=progress, flush=True)
    found = SearchResult(results, len(planned), stopped_by, time.perf_counter() - started, key)
    winner = found.winner
    for default in found.defaults:
        # the guarantee: the defaults are trials, so the winner is at least as good on validation
        if winner.metrics[key] < default.metrics[key]:
            raise AssertionError(f"winner {winner.trial.label()} below default {default.trial.label()} on validation")
    if progress is not None and stopped_by:
        print(
            f"time budget of {time_budget:g} s reached: {len(results)} of {len(planned)} trials ran, "
            "no new trial started after it",
            file=progress,
            flush=True,
        )
    return found


@dataclass
class TuningResult:
    search: SearchResult
    test: dict[int, dict[str, float]]  # trial number -> test metrics (primary slice plain, ...)
    roles: dict[int, list[str]]  # trial number -> winner / default <family> / best <family>
    splits: dict
    parent_run_id: str | None = None
    seconds: float = 0.0

    @property
    def winner(self) -> TrialResult:
        return self.search.winner

    def as_dict(self) -> dict:
        by_number = {r.trial.number: r for r in self.search.results}

        def row(r: TrialResult) -> dict:
            return {
                "trial": r.trial.number,
                "family": r.trial.family,
                "params": r.trial.overrides,
                "default": r.trial.default,
                "label": r.trial.label(),
                "seconds": round(r.seconds, 2),
                "validation": r.metrics,
                "run_id": r.run_id,
            }

        return {
            "splits": self.splits,
            "selection": f"warm {self.search.key} on validation; the test was not used to choose",
            "trials_planned": self.search.planned,
            "trials_run": len(self.search.results),
            "stopped_by": self.search.stopped_by,
            "search_seconds": round(self.search.seconds, 1),
            "seconds": round(self.seconds, 1),
            "winner": row(self.winner),
            "on_test": [
                {**row(by_number[n]), "roles": self.roles[n], "test": metrics} for n, metrics in self.test.items()
            ],
            "trials": [row(r) for r in self.search.results],
            "parent_run_id": self.parent_run_id,
        }


def report_roles(found: SearchResult, families: list[str] | tuple[str, ...]) -> dict[int, list[str]]:
    """The configurations scored on the test: the winner, each family's default and best trial."""
    roles: dict[int, list[str]] = {found.winner.trial.number: ["winner"]}
    for family in families:
        default = next(r for r in found.defaults if r.trial.family == family)
        roles.setdefault(default.trial.number, []).append(f"default {family}")
        roles.setdefault(found.best_of(family).trial.number, []).append(f"best {family}")
    return roles


def _log(client: MlflowClient, run_id: str, params: dict, metrics: dict | None = None) -> None:
    """Params and metrics in one request (a request per value took seconds on a SQLite store)."""
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in (metrics or {}).items()],
        params=[Param(key, str(value)) for key, value in params.items()],
    )


def tune(
    splits: TuningSplits,
    base: RecommenderParams,
    families: list[str] | tuple[str, ...] = DEFAULT_FAMILIES,
    *,
    tracking_uri: str,
    experiment: str,
    artifact_root: Path | None = None,
    max_trials: int | None = None,
    time_budget: float | None = None,
    progress: TextIO | None = None,
    spaces: dict[str, dict[str, list]] = FAMILY_SPACES,
    search_params: dict[str, str] | None = None,
    search_dicts: dict[str, dict] | None = None,
) -> TuningResult:
    """Search on validation (see the module docstring), then the test once for the winner and
    every family's default and best trial; everything logged to MLflow. One line per trial to
    `progress` (the CLI: stderr). The parent run also carries `search_params` and `search_dicts`
    (JSON artifacts by file name): what every trial shares, such as the feature columns' typing."""
    started = time.perf_counter()
    planned = plan(families, base, base.seed, max_trials, searchable(spaces, splits.validation_data))
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = experiment_for(client, experiment, artifact_root, TUNING)
    described = splits.describe()
    parent = new_run(
        client, experiment_id, "tune", {"split": str(described["test"]), "validation": str(described["validation"])}
    )
    _log(
        client,
        parent,
        {
            "families": ",".join(families),
            "max_trials": max_trials,
            "time_budget_seconds": time_budget,
            "validation_days": splits.validation_days,
            "seed": base.seed,
            "k": base.k,
            "selection": f"warm ndcg_at_{base.k} on validation",
            **(search_params or {}),
        },
    )
    for name, content in (search_dicts or {}).items():
        client.log_dict(parent, content, name)

    def log_trial(result: TrialResult) -> None:
        # named `<label>, trial <n> <date> <id>`, started when its fit did: its duration is the trial's
        run = new_run(
            client,
            experiment_id,
            f"{result.trial.label()}, trial {result.trial.number:03d}",
            {"split": str(described["validation"]), "family": result.trial.family},
            parent_run_id=parent,
            start_time=int((time.time() - result.seconds) * 1000),
        )
        params = {"family": result.trial.family, "default": result.trial.default, **result.trial.overrides}
        metrics = {f"val_{key}": value for key, value in result.metrics.items()}
        _log(client, run, {**params, "k": base.k, "seed": base.seed}, {**metrics, "seconds": result.seconds})
        client.set_terminated(run)
        result.run_id = run

    status = "FAILED"
    try:
        found = search(splits.validation_data, splits.validation, base, planned, time_budget, progress, log_trial)
        roles = report_roles(found, families)
        by_number = {r.trial.number: r for r in found.results}
        on_test = {}
        for n, number in enumerate(roles, 1):  # the test, once per configuration, after the choice is made
            trial = by_number[number].trial
            evaluation = evaluate_split(splits.test_data, splits.test, trial.params(base), models=[trial.family])
            on_test[number] = model_metrics(evaluation, trial.family)
            if progress is not None:
                score = on_test[number].get(f"ndcg_at_{base.k}", float("nan"))
                print(
                    f"[test {n}/{len(roles)}, {time.perf_counter() - started:.0f} s elapsed] {trial.label()} "
                    f"({', '.join(roles[number])}): refitted on all training, test NDCG@{base.k} {score:.4f}",
                    file=progress,
                    flush=True,
                )
        winner = found.winner
        params = {"winner": winner.trial.label(), "winner_family": winner.trial.family}
        params |= {f"winner_{key}": value for key, value in winner.trial.overrides.items()}
        metrics = {"trials_run": len(found.results), "trials_planned": found.planned}
        metrics |= {f"val_{key}": value for key, value in winner.metrics.items()}
        metrics |= {f"test_{key}": value for key, value in on_test[winner.trial.number].items()}
        for default in found.defaults:
            family = default.trial.family
            metrics |= {f"test_default_{family}_{key}": value for key, value in on_test[default.trial.number].items()}
        _log(client, parent, params, metrics)
        status = "FINISHED"
    finally:
        client.set_terminated(parent, status=status)
    return TuningResult(found, on_test, roles, described, parent, time.perf_counter() - started)
