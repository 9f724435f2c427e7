"""One run of the recommender, frames in and lists out (refresh_recommender). Within the
retraining cadence (plan_refresh) the champion scores today's customers and nothing is trained.
Otherwise a tracked training run: evaluated on a time holdout (in a second thread) while the
published model is built, fitted and ranked; logged to MLflow, registered, and judged by the
promotion gate, which says where today's lists come from (this model, the champion, or the best
baseline). And the lists when no model can be trained."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace

import mlflow
import numpy as np
import pandas as pd
import polars as pl
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits

from ml.plots import grouped_bar_png
from ml.promotion import (
    GateRule,
    best_baseline,
    identical_retrain,
    judge_challenger,
    judge_first_model,
    judge_refresh,
)
from ml.rec_evaluation import (
    PRIMARY_SLICE,
    SLICES,
    empty_slices,
    evaluate_per_user,
    evaluate_split,
    holdout_shortfall,
    loggable_metrics,
    model_metrics,
    time_split,
    validation_split,
)
from ml.rec_families import PUBLISHABLE, fit_family
from ml.rec_lists import (
    ITEM_FEATURES,
    USER_FEATURES,
    ListRules,
    baseline_candidates,
    champion_family_lists,
    champion_lists_for,
    constant_column,
    family_lists,
    popular_without_model,
    published_bundle,
    training_fingerprint,
)
from ml.recommender import RecommenderParams, TrainingFrames, build_data, with_feature_weight, with_features
from ml.registry import PRIMARY_METRIC, GateDecision, champion, champion_params, decide, record_on_run, register
from ml.tracking import (
    RECOMMENDER,
    LoggedRun,
    Tracking,
    interactions_dataset,
    log_recommender_run,
    log_scoring_run,
    rename_run,
    training_run,
)


@dataclass(frozen=True)
class Cadence:
    """How often the recommender retrains: when the champion's training data is `every_days` days
    older than today's (0 or 1: every run), or at once with `force`."""

    every_days: int = 7
    force: bool = False

    def __post_init__(self):
        if self.every_days < 0:
            raise ValueError(f"retrain_every_days must not be negative, got {self.every_days}")


@dataclass(frozen=True)
class Refresh:
    """What a run does with the recommender, and why: retrain, or score with the champion."""

    retrain: bool
    reason: str  # one sentence, for the UI, MLflow and the run summary
    data_through: dt.date  # the newest interaction's day in today's data
    every_days: int
    champion_version: str | None = None
    trained_through: dt.date | None = None  # the champion's newest training interaction's day
    next_retrain_due: dt.date | None = None  # None: the next run retrains

    @property
    def kind(self) -> str:
        return "retrain" if self.retrain else "score_only"

    @property
    def next_retrain(self) -> str:
        return "next run" if self.next_retrain_due is None else str(self.next_retrain_due)


@dataclass
class RecommenderRun:
    recs: pd.DataFrame  # the published lists (customer_key as customer_pkey)
    lists_from: str  # challenger, champion or baseline:<name>
    logged: LoggedRun | None = None
    decision: GateDecision | None = None
    metrics: dict[str, float] | None = None
    plot: bytes | None = None
    skipped_reason: str | None = None
    refresh: Refresh | None = None  # None: no model could be trained (lists_without_model)
    scoring_run_id: str | None = None  # the MLflow run of a scoring-only refresh

    @property
    def lists_version(self) -> str:
        """The model version (or baseline:<name>) the lists come from; "none" without a list."""
        return str(self.recs["model_version"].iloc[0]) if len(self.recs) else "none"


def data_through(interactions: pl.DataFrame) -> dt.date:
    """The day of the newest interaction: how far the data goes, whatever the wall clock says (a
    backfill or a replay of old data is judged by its own dates)."""
    newest = interactions["occurred_at"].max()
    if newest is None:
        raise ValueError("no interaction has an occurred_at: the data has no date to judge a refresh by")
    return newest.date() if isinstance(newest, dt.datetime) else newest


def config_changes(logged: dict[str, str], params: RecommenderParams) -> list[str]:
    """The settings in which a champion's logged run differs from today's: RecommenderParams'
    fields and the feature lists. Empty: the same configuration."""
    then = RecommenderParams.from_logged(logged)
    # the family compared is the one asked for: "auto" picks one at each retrain, so a champion
    # auto chose is today's configuration whichever family it is
    then = replace(then, family=logged.get("family_requested", then.family))
    changed = [f.name for f in fields(RecommenderParams) if getattr(then, f.name) != getattr(params, f.name)]
    features = {"user_features": ",".join(USER_FEATURES), "item_features": ",".join(ITEM_FEATURES)}
    return changed + [name for name, now in features.items() if logged.get(name) != now]


def plan_refresh(tracking: Tracking, params: RecommenderParams, through: dt.date, cadence: Cadence) -> Refresh:
    """Retrain, or score today's customers with the champion? Scoring only when there is a
    champion, trained with today's configuration, on data that ends fewer than
    `cadence.every_days` days before today's (`through`). Age is measured on the data's dates,
    not on when the champion was registered: a backfill or a replay then retrains exactly when a
    daily run on that data would have, and data older than the champion's (a replay of the past)
    retrains, since the champion has seen its future."""
    plan = Refresh(True, "", through, cadence.every_days)
    if cadence.force:
        return replace(plan, reason="retrained: force_retrain was set")
    if cadence.every_days <= 1:
        return replace(plan, reason=f"retrained: retrain_every_days is {cadence.every_days} (every run)")
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    current = champion(client, tracking.model_name)
    if current is None:
        return replace(plan, reason="retrained: no champion yet")
    version = str(current.version)
    plan = replace(plan, champion_version=version)
    logged = champion_params(client, current)
    if changed := config_changes(logged, params):
        return replace(
            plan, reason=f"retrained: champion version {version} was trained with another {', '.join(changed)}"
        )
    if "trained_through" not in logged:
        return replace(plan, reason=f"retrained: champion version {version} logged no trained_through date")
    trained = dt.date.fromisoformat(logged["trained_through"])
    due = trained + dt.timedelta(days=cadence.every_days)
    plan = replace(plan, trained_through=trained, next_retrain_due=due)
    if through < trained:
        return replace(
            plan,
            reason=f"retrained: today's data ends on {through}, before champion version {version}'s "
            f"training data ({trained}): a replay the champion has seen the future of",
        )
    if through >= due:
        return replace(
            plan,
            reason=f"retrained: champion version {version} was trained on data up to {trained}, "
            f"today's goes to {through}; retrain due {due} (retrain_every_days {cadence.every_days})",
        )
    return replace(
        plan,
        retrain=False,
        reason=f"scored with champion version {version} trained on data up to {trained}; "
        f"next retrain due {due} (retrain_every_days {cadence.every_days}; data up to {through})",
    )


def refresh_recommender(
    frames: TrainingFrames,
    params: RecommenderParams,
    rules: ListRules,
    tracking: Tracking,
    gate: GateRule,
    cadence: Cadence,
    log,
    phase: Callable[[str], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> RecommenderRun:
    """Today's lists: from the champion alone within the cadence (plan_refresh), else from a
    training run (train_and_rank); thin data trains nothing (lists_without_model)."""
    if frames.skip_reason is not None:
        return lists_without_model(tracking, frames, rules, frames.skip_reason, log)
    with phase("plan_refresh"):
        refresh = plan_refresh(tracking, params, data_through(frames.interactions), cadence)
    log.info(f"recommender: {refresh.reason}")
    if not refresh.retrain:
        return score_with_champion(tracking, refresh, frames, rules, phase)
    tags = {**tracking.tags, "refresh": refresh.kind, "refresh_reason": refresh.reason}
    run = train_and_rank(frames, params, rules, replace(tracking, tags=tags), gate, log, phase)
    if run.decision is not None:  # a model was trained (not the thin-sample fallback)
        # a promoted model starts the cadence again; a kept champion leaves it due (next run)
        promoted = run.decision.promoted and cadence.every_days > 1
        due = refresh.data_through + dt.timedelta(days=cadence.every_days) if promoted else None
        run.refresh = replace(refresh, next_retrain_due=due)
    return run


def score_with_champion(
    tracking: Tracking,
    refresh: Refresh,
    frames: TrainingFrames,
    rules: ListRules,
    phase: Callable[[str], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> RecommenderRun:
    """A refresh within the cadence: no evaluation, no fit, no new model version; the champion
    scores today's customers under today's rules (lists_from_champion), and an MLflow run says so."""
    users = frames.users_now()
    frames.customers = frames.features_now = frames.features_then = None
    tags = {"refresh": refresh.kind, "refresh_reason": refresh.reason}
    # the run covers the scoring (loading the champion, ranking every customer)
    with training_run(tracking, "score_with_champion", RECOMMENDER, tags) as run_id:
        with phase("champion_lists"):
            recs = lists_from_champion(
                tracking, refresh.champion_version, users, frames.items, frames.interactions, rules, phase
            )
        with phase("mlflow_log"):
            _log_scoring(tracking, refresh, rules, users, recs, tags, run_id)
    return RecommenderRun(recs, "champion", refresh=refresh, scoring_run_id=run_id)


def _log_scoring(tracking, refresh: Refresh, rules: ListRules, users, recs, tags: dict, run_id: str) -> None:
    """What score_with_champion did, in its run: which champion and why, the rules, how many."""
    log_scoring_run(
        tracking,
        params={
            "champion_version": refresh.champion_version,
            "trained_through": str(refresh.trained_through),
            "data_through": str(refresh.data_through),
            "next_retrain_due": refresh.next_retrain,
            "retrain_every_days": refresh.every_days,
            **asdict(rules),
        },
        metrics={"customers": float(len(users)), "list_rows": float(len(recs))},
        tags=tags,
        run_id=run_id,
    )


def evaluation_sample(n_customers: int, size: int, seed: int) -> np.ndarray:
    """The rows of `size` customers drawn without replacement, seeded: the draw pandas'
    DataFrame.sample(n=size, random_state=seed) makes, so the sample is the one it always was."""
    return np.random.RandomState(seed).choice(n_customers, size=size, replace=False)


def _timed(phase, name: str, function, *args):
    with phase(name):
        return function(*args)


def train_and_rank(
    frames: TrainingFrames,
    params: RecommenderParams,
    rules: ListRules,
    tracking: Tracking,
    gate: GateRule,
    log,
    phase: Callable[[str], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> RecommenderRun:
    """Evaluate, fit, log, register and gate; today's lists from where the gate says. `log` has
    info and warning; `phase(name)` times a block. Thin data (no model can be evaluated on the
    customers sampled) gives lists_without_model's lists."""
    if frames.features_then.is_empty():
        log.warning(f"no user feature snapshot on or before {frames.split_at.date()}: evaluated without user features")
    eval_users = frames.customers.select("customer_key")
    if len(eval_users) > params.eval_max_users:
        # evaluation fits two models and scores every item per user: on a seeded sample of
        # customers (and their interactions) it costs the same at 100k and at 1M customers
        eval_users = eval_users[evaluation_sample(len(eval_users), params.eval_max_users, params.seed)].sort(
            "customer_key"
        )
    eval_users = with_features(eval_users, frames.features_then)
    # each frame is let go once used, so the process is small again when the lists are written
    frames.features_then = None
    with phase("evaluate_prepare"):
        eval_data = build_data(eval_users, frames.items, frames.interactions, USER_FEATURES, ITEM_FEATURES)
    if (skip_reason := holdout_shortfall(eval_data.interactions, params.test_days)) is not None:
        reason = f"the evaluation sample of {len(eval_users)} customers: {skip_reason}"
        return lists_without_model(tracking, frames, rules, reason, log)
    split = time_split(eval_data, params.test_days)
    requested = params.family
    # the MLflow run starts here, before the family is chosen and fitted, and ends after the gate:
    # its duration is the training's (FAILED if anything in it raises)
    with training_run(tracking, requested, RECOMMENDER) as run_id:
        t = _train_in_run(run_id, frames, params, rules, tracking, gate, log, phase, eval_users, eval_data, split)
    recs, decision, logged = t.recs, t.decision, t.logged
    if decision.lists_from == "challenger":
        log.info(decision.summary())
        recs["model_run_id"] = constant_column(logged.run_id, len(recs))
        recs["model_version"] = constant_column(decision.challenger_version, len(recs))
    else:
        recs = _lists_not_from_the_model(
            decision, logged, tracking, t.params, rules, t.model, t.data, t.users, frames, log, phase
        )
    plot = ndcg_plot(t.evaluation, t.params.k, split.split_at)
    return RecommenderRun(recs, decision.lists_from, logged, decision, t.metrics, plot)


@dataclass
class _Trained:
    """What a training run leaves for the lists: the family's params, the model and its data, the
    customers and their lists, the evaluation, the logged run and the gate's decision."""

    params: RecommenderParams
    model: object
    data: object
    users: pl.DataFrame
    recs: pd.DataFrame
    evaluation: dict
    metrics: dict[str, float]
    logged: LoggedRun
    decision: GateDecision


def _train_in_run(run_id, frames, params, rules, tracking, gate, log, phase, eval_users, eval_data, split) -> _Trained:
    """train_and_rank's training, in its MLflow run `run_id`: choose the family, evaluate, fit
    and rank, log, register and gate."""
    requested = params.family
    with phase("family_selection"):
        params, selection = choose_family(eval_data, split, params, log)
    if params.family != requested:
        rename_run(tracking.tracking_uri, run_id, params.family)
    # The evaluation (two fits and full-catalogue rankings on the sample) and the published model's
    # build, fit and scoring share nothing: the evaluation runs in a second thread meanwhile. The fit
    # runs on one LightFM thread (reproducible) and releases the GIL, as numpy's large array
    # operations do, so the two use both cores; each computes exactly what it did alone. Matrix
    # products run on one BLAS thread meanwhile: the evaluation's rankings on two would take cycles
    # from the fit, the longest part (the scoring ranks chunks on one BLAS thread each anyway).
    with (
        threadpool_limits(limits=1, user_api="blas"),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="recommender-evaluation") as background,
    ):
        evaluating = background.submit(_timed, phase, "evaluate", evaluate_per_user, eval_data, split, params)
        # the published model: every interaction, today's features
        users = frames.users_now()
        frames.customers = frames.features_now = None
        with phase("build"):
            data = build_data(users, frames.items, frames.interactions, USER_FEATURES, ITEM_FEATURES)
            data = with_feature_weight(data, params.feature_weight)
        with phase("fit"):
            model = fit_family(data, params)
        with phase("score"):
            recs = family_lists(model, data, users, frames.items, rules, params)
        with phase("evaluate_wait"):  # what the evaluation took beyond the published model's work
            evaluation, per_user = evaluating.result()  # raises the evaluation's error, if any
        with phase("fingerprint"):
            fingerprint = training_fingerprint(frames.interactions, users, frames.items)
    metrics, logged = _log_run(
        tracking,
        params,
        frames,
        split,
        data,
        model,
        evaluation,
        fingerprint,
        len(eval_users),
        log,
        phase,
        selection,
        requested,
        run_id,
    )
    with phase("promotion_gate"):
        decision = promotion_gate(tracking, gate, logged, params, per_user, evaluation, eval_data, split, fingerprint)
    return _Trained(params, model, data, users, recs, evaluation, metrics, logged, decision)


def choose_family(data, split, params: RecommenderParams, log) -> tuple[RecommenderParams, dict[str, float]]:
    """The family to train and publish: `params.family` as given, or with "auto" the publishable
    family (ml/rec_families.PUBLISHABLE) with the best warm NDCG@k on a validation split carved
    from the evaluation's training period (validation_split), never on the holdout the gate then
    judges it on. Ties go to the first listed (the LightFM hybrid). Returns the params with the
    family set and each family's validation NDCG@k (metrics validation_<family>_ndcg_at_<k>)."""
    if params.family != "auto":
        if params.family not in PUBLISHABLE:
            raise ValueError(f"family {params.family!r} cannot be published; choose auto or one of {PUBLISHABLE}")
        return params, {}
    days = params.validation_days or params.test_days
    carved = validation_split(data, split, days)
    if carved is None:
        log.warning(f"too little training data to carve a {days}-day validation split: the LightFM hybrid is trained")
        return replace(params, family="lightfm_hybrid"), {}
    inner, validation = carved
    # the choice reads the primary slice only: the other three would cost as much again each
    metrics = evaluate_split(inner, validation, params, models=list(PUBLISHABLE), only=(PRIMARY_SLICE,))
    ndcg = {f: metrics[f][PRIMARY_SLICE][f"ndcg_at_{params.k}"] for f in PUBLISHABLE}
    defined = [f for f in PUBLISHABLE if np.isfinite(ndcg[f])]
    chosen = max(defined, key=lambda f: (ndcg[f], -PUBLISHABLE.index(f))) if defined else "lightfm_hybrid"
    log.info(
        f"family chosen on a {days}-day validation split from {validation.split_at.date()}: {chosen} "
        f"(warm NDCG@{params.k}: " + ", ".join(f"{f} {v:.4f}" for f, v in ndcg.items()) + ")"
    )
    return replace(params, family=chosen), {
        f"validation_{f}_ndcg_at_{params.k}": float(v) for f, v in ndcg.items() if np.isfinite(v)
    }


def _log_run(
    tracking: Tracking,
    params,
    frames,
    split,
    data,
    model,
    evaluation,
    fingerprint,
    eval_customers,
    log,
    phase,
    selection,
    requested: str,
    run_id: str | None = None,
):
    """The published family's MLflow run (`run_id`), the other families and the baselines nested:
    every metric (run_metrics, nested_metrics), every choice a param. Each slice's size is logged
    once, as a param slice_users.<slice> (0: an empty slice, which logs no metric)."""
    sizes = slice_sizes(evaluation, params.family)
    metrics = run_metrics(evaluation, params.family)
    metrics.update(selection)
    if empty := empty_slices(evaluation):
        log.info(f"no user to evaluate on slice(s) {', '.join(empty)}: no metric logged for them")
    metrics.update({k: float(v) for k, v in split.describe().items() if k != "split"})
    metrics["eval_customers"] = float(eval_customers)
    log.info(
        f"holdout from {split.split_at.date()}, user features as of {frames.features_at}: "
        f"{params.family} {evaluation[params.family][PRIMARY_SLICE]}"
    )
    published_pairs = int(data.interactions[["u", "i"]].drop_duplicates().shape[0])
    evaluated_pairs = int(split.train[["u", "i"]].drop_duplicates().shape[0])
    if note := params.budget_note(published_pairs, evaluated_pairs):
        log.warning(note)
    with phase("mlflow_log"):
        logged = log_recommender_run(
            tracking_uri=tracking.tracking_uri,
            experiment=tracking.experiment,
            artifact_root=tracking.artifact_root,
            params={
                **params.as_dict(),
                "user_features": ",".join(USER_FEATURES),
                "item_features": ",".join(ITEM_FEATURES),
                "split_at": str(split.split_at.date()),
                "user_features_as_of": str(frames.features_at),
                "epochs_used": params.epochs_for(published_pairs),
                "eval_epochs_used": params.epochs_for(evaluated_pairs),
                "primary_slice": PRIMARY_SLICE,
                "n_users": len(data.users.ids),
                "n_items": len(data.items.ids),
                "training_data_fingerprint": fingerprint,
                # how old the model's data is: the retraining cadence counts from it (plan_refresh)
                "trained_through": str(data_through(frames.interactions)),
                # "auto" or a family: what the configuration asked for (config_changes compares it)
                "family_requested": requested,
                "empty_slices": ",".join(empty) or "none",
                **{f"slice_users.{name}": n for name, n in sizes.items()},
            },
            metrics=metrics,
            bundle=published_bundle(model, data, params),
            family=params.family,
            tags=tracking.tags,
            mappings={"users": data.users.ids, "items": data.items.ids},
            baselines={m: nested_metrics(evaluation, m) for m in evaluation if m != params.family},
            shared_params={
                "split_at": str(split.split_at.date()),
                "primary_slice": PRIMARY_SLICE,
                "k": params.k,
                "test_days": params.test_days,
                "recent_days": params.recent_days,
            },
            run_id=run_id,
            dataset=interactions_dataset(frames.interactions, fingerprint, tracking.data_source),
        )
    return metrics, logged


def slice_sizes(evaluation: dict, model: str) -> dict[str, int]:
    """The users each slice evaluated `model` on (every model is scored on the same users)."""
    return {s: int(evaluation[model][s].get("users", 0)) for s in SLICES if s in evaluation[model]}


def nested_metrics(evaluation: dict, model: str) -> dict[str, float]:
    """One model's metrics on every slice (model_metrics: the primary slice plain, the others
    <slice>_<metric>), of the user counts only `users`, the primary slice's: every model is
    evaluated on the same users, the slice sizes are the run's slice_users.* params."""
    return {k: v for k, v in model_metrics(evaluation, model).items() if not k.endswith("_users")}


def run_metrics(evaluation: dict, family: str) -> dict[str, float]:
    """The published family's run: its metrics on every slice under the names its nested runs
    use (nested_metrics: in the UI's compare every slice lines up, parent and children), and
    every other model's on the primary slice as <model>_<metric>, the comparison the run
    summary and the Dagster UI show. Each other model's other slices are in its nested run only
    (they were once all in this run: 203 metrics, the chart view a wall of 200 charts)."""
    out = nested_metrics(evaluation, family)
    for model, by_slice in evaluation.items():
        if model != family:
            primary = loggable_metrics(by_slice).get(PRIMARY_SLICE, {})
            out.update({f"{model}_{k}": v for k, v in primary.items() if k != "users"})
    return out


def _lists_not_from_the_model(
    decision, logged, tracking, params, rules, model, data, users, frames, log, phase
) -> pd.DataFrame:
    """The lists when the gate keeps the model just trained from publishing them."""
    if decision.lists_from == "champion":
        # published recommendations come only from the champion: it scores today's customers
        with phase("champion_lists"):
            recs = lists_from_champion(tracking, decision.champion_now, users, frames.items, frames.interactions, rules)
        log.warning(f"{decision.summary()}; every list rewritten by champion version {decision.champion_now}")
        return recs
    # no champion, and the first model was not shown to be as good as the best baseline: the
    # baseline's lists, marked with it (model_version 'baseline:<name>', its nested MLflow run)
    baseline = decision.lists_from.removeprefix("baseline:")
    with phase("baseline_lists"):
        recs = baseline_candidates(model, data, users, frames.items, rules, baseline, params.recent_days)
    recs["model_run_id"] = constant_column(logged.children[baseline], len(recs))
    recs["model_version"] = constant_column(decision.lists_from, len(recs))
    log.warning(f"{decision.summary()}; every list is {baseline}'s ({decision.lists_from})")
    return recs


def ndcg_plot(evaluation: dict, k: int, split_at: pd.Timestamp) -> bytes:
    """NDCG@k per slice, the hybrid beside every baseline, as a PNG."""
    ndcg = f"ndcg_at_{k}"
    return grouped_bar_png(
        {s: {m: evaluation[m][s].get(ndcg, float("nan")) for m in evaluation} for s in SLICES},
        f"NDCG@{k} per slice: LightFM hybrid vs baselines (holdout from {split_at.date()})",
        f"NDCG@{k}",
    )


def primary_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The defined metrics of the primary slice (every slice is in the MLflow run)."""
    others = tuple(f"{s}_" for s in SLICES if s != PRIMARY_SLICE)
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v) and not k.startswith(others)}


def lists_without_model(
    tracking: Tracking, frames: TrainingFrames, rules: ListRules, reason: str, log
) -> RecommenderRun:
    """No model can be trained or evaluated on this data (`reason`): nothing is registered; the
    lists come from the champion under today's rules if there is one, else from popularity
    without a model (popular_without_model), so everything downstream still publishes."""
    users = frames.users_now()
    interactions = frames.interactions
    current = champion(MlflowClient(tracking_uri=tracking.tracking_uri), tracking.model_name)
    if current is not None and not users.is_empty() and not interactions.is_empty():
        recs = lists_from_champion(tracking, str(current.version), users, frames.items, interactions, rules)
        lists_from = "champion"
    else:
        recs = popular_without_model(users, frames.items, interactions, rules, "baseline:most_popular")
        lists_from = "baseline:most_popular"
    log.warning(f"recommender model skipped: {reason}; {len(recs):,} list rows from {lists_from}")
    return RecommenderRun(recs, lists_from, skipped_reason=reason)


def lists_from_champion(
    tracking: Tracking,
    version: str,
    users: pl.DataFrame,
    items: pl.DataFrame,
    interactions: pl.DataFrame,
    rules: ListRules,
    phase: Callable[[str], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> pd.DataFrame:
    """After a rejected challenger, and between retrains: every customer's list from the champion
    (champion_lists_for) with today's rules, so consent withdrawn, products deactivated, purchases made and customers
    arrived since the champion was trained are all honoured. Deterministic: a re-run writes the
    same table."""
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    registered = client.get_model_version(tracking.model_name, version)
    feature_weight = RecommenderParams.from_logged(champion_params(client, registered)).feature_weight
    mlflow.set_tracking_uri(tracking.tracking_uri)
    with phase("champion_load"):
        bundle = mlflow.pyfunc.load_model(f"models:/{tracking.model_name}/{version}").unwrap_python_model().bundle
    if bundle.get("family", "lightfm_hybrid") == "lightfm_hybrid":
        recs = champion_lists_for(bundle, feature_weight, users, items, interactions, rules, phase)
    else:
        with phase("champion_rank"):
            recs = champion_family_lists(bundle, users, items, interactions, rules)
    recs["model_run_id"] = constant_column(registered.run_id, len(recs))
    recs["model_version"] = constant_column(str(version), len(recs))
    return recs


def promotion_gate(
    tracking: Tracking,
    rule: GateRule,
    logged,
    params: RecommenderParams,
    per_user: dict,
    evaluation: dict,
    data,
    split,
    fingerprint: str,
) -> GateDecision:
    """Register the new model and let the gate (ml/promotion.py) decide on per-user warm NDCG@10:
    against the champion's configuration refitted and evaluated on the same split; with no
    champion, against the best simple baseline; a champion's own configuration on the same
    training data is an identical retrain, on newer data a refresh. Fits are deterministic, so a
    champion with the challenger's own configuration is not refitted. The decision is recorded on
    the model version and the challenger's MLflow run (ml/registry.py)."""
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    name = tracking.model_name
    current = champion(client, name)
    version = register(client, name, logged.model_uri, logged.run_id)
    hybrid = per_user[params.family][PRIMARY_SLICE]
    baseline = best_baseline(evaluation, PRIMARY_SLICE, PRIMARY_METRIC)
    if current is None:
        verdict = judge_first_model(hybrid, per_user[baseline][PRIMARY_SLICE], rule, baseline)
    else:
        label = f"champion version {current.version}"
        logged_params = champion_params(client, current)
        champion_config = RecommenderParams.from_logged(logged_params)
        if champion_config == params and logged_params.get("training_data_fingerprint") == fingerprint:
            verdict = identical_retrain(hybrid, rule, label)
        elif champion_config == params:
            verdict = judge_refresh(hybrid, per_user[baseline][PRIMARY_SLICE], rule, baseline, label)
        else:
            family = champion_config.family
            _, again = evaluate_per_user(data, split, champion_config, models=[family])
            verdict = judge_challenger(hybrid, again[family][PRIMARY_SLICE], rule, label)
    decision = decide(client, name, version, None if current is None else str(current.version), verdict)
    record_on_run(client, logged.run_id, decision, rule.resamples, rule.seed)
    return decision
