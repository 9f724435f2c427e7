"""One tracked run of the propensity models: purchase in the next 30 days and churn risk, each
trained point in time on the oldest of the last three feature snapshots, evaluated out of time on
the next, refit and applied to the latest (ml/propensity.py); each logged to MLflow."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd
import polars as pl

from ml.plots import grouped_bar_png
from ml.propensity import CATEGORICAL_FEATURES, NUMERIC_FEATURES, train_propensity, training_shortfall
from ml.tracking import PROPENSITY, Tracking, frame_dataset, log_propensity_run, training_run

# (label column, score column of ml.propensity_scores, population: scored where it is > 0; None: everyone)
TARGETS = (
    ("purchased_next_30d", "purchase_propensity_30d", None),
    ("churned_next_30d", "churn_risk_30d", "frequency"),
)


@dataclass
class PropensityRun:
    scores: pl.DataFrame  # ml.propensity_scores: customer_key, as_of_date, a score and run id per target
    rows_read: int
    skipped: dict[str, str] = field(default_factory=dict)  # target: why it has no model
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # per trained target
    runs: dict[str, str] = field(default_factory=dict)  # trained target: its MLflow run id
    plot: bytes | None = None  # the models against the recency-only baseline

    @property
    def skipped_reason(self) -> str | None:
        return "; ".join(dict.fromkeys(self.skipped.values())) or None


def _customers(current: pl.DataFrame) -> pl.DataFrame:
    """The scored customers' keys and snapshot date, a timestamp as ml.propensity_scores has
    always stored it."""
    return current.select("customer_key", pl.col("as_of_date").cast(pl.Datetime("us")))


def _null_scores(out: pl.DataFrame, column: str) -> pl.DataFrame:
    return out.with_columns(pl.lit(None, pl.Float64).alias(column), pl.lit(None, pl.String).alias(f"{column}_run_id"))


def _without_models(current: pl.DataFrame, reasons: dict[str, str], log) -> PropensityRun:
    """No model can be trained (`reasons` per target): the current customers with every score and
    run id null, so publish/customer_scores still publishes its RFM values (its check then expects
    no score at all) and decisioning runs."""
    out = _customers(current)
    for _, column, _ in TARGETS:
        out = _null_scores(out, column)
    run = PropensityRun(out, current.height, skipped=reasons)
    log.warning(f"propensity models skipped: {run.skipped_reason}")
    return run


def score_propensities(frames: pl.DataFrame, seed: int, max_train_rows: int, tracking: Tracking, log) -> PropensityRun:
    """`frames`: every feature snapshot with its labels, in (as_of_date, customer_key) order. A
    target that cannot be trained (thin data: too few snapshots, one label class) keeps null
    scores, with the reason; `log` has warning."""
    snapshots = frames["as_of_date"].unique().sort().to_list()
    if len(snapshots) < 3:
        reason = f"need 3 feature snapshots (train, evaluate, current), found {len(snapshots)}"
        latest = frames.filter(pl.col("as_of_date") == snapshots[-1]) if snapshots else frames
        return _without_models(latest, {t: reason for t, _, _ in TARGETS}, log)
    train, evaluation, current = (frames.filter(pl.col("as_of_date") == d) for d in snapshots[-3:])
    skipped = {
        target: reason
        for target, _, _ in TARGETS
        if (reason := training_shortfall(train, evaluation, target)) is not None
    }
    if len(skipped) == len(TARGETS):
        return _without_models(current, skipped, log)
    for reason in skipped.values():
        log.warning(f"propensity model skipped: {reason}")
    run = PropensityRun(_customers(current), frames.height, skipped=skipped)
    for target, column, _ in TARGETS:
        if target in skipped:
            run.scores = _null_scores(run.scores, column)
    targets = tuple(t for t in TARGETS if t[0] not in skipped)

    def train_target(target: str, population: str | None):
        scored = current if population is None else current.filter(pl.col(population) > 0)
        return train_propensity(train, evaluation, scored, target, seed=seed, max_train_rows=max_train_rows)

    # Each target's MLflow run starts before the fits and ends once logged: its duration is the
    # training's (FAILED if anything raises). The two models share nothing: each trains in a thread
    # of its own (scikit-learn's tree code releases the GIL; each fit keeps its one OpenMP thread),
    # with the results of training them one after the other. MLflow logging stays in this thread.
    with contextlib.ExitStack() as runs:
        run_ids = [runs.enter_context(training_run(tracking, t, PROPENSITY, {"target": t})) for t, _, _ in targets]
        with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="propensity") as workers:
            trained = [workers.submit(train_target, target, population) for target, _, population in targets]
            results = [job.result() for job in trained]
        comparison = _log_targets(
            run, targets, results, run_ids, (train, evaluation), snapshots, max_train_rows, tracking
        )
    run.plot = grouped_bar_png(
        comparison, "Propensity models vs the recency-only baseline (evaluation snapshot)", "score"
    )
    return run


def input_example(model, frame: pl.DataFrame) -> pd.DataFrame:
    """Two made-up customers for the model's input example, never a real one: every numeric
    feature at its median and at its 90th percentile in `frame` (the model's training rows),
    every categorical one at its most frequent value, as a string."""
    rows = {}
    for column in model.feature_names_in_:
        if column in NUMERIC_FEATURES:
            values = frame[column].cast(pl.Float64).fill_nan(None)
            rows[column] = [values.median(), values.quantile(0.9)]
        else:
            common = frame[column].cast(pl.String).drop_nulls().mode().sort()
            rows[column] = [common[0] if len(common) else None] * 2
    return pd.DataFrame(rows)


def _log_targets(run, targets, results, run_ids, frames, snapshots, max_train_rows, tracking) -> dict:
    """Each trained target's MLflow run (into `run_ids`), its scores and run id into `run`; the
    models against the recency-only baseline, for the chart."""
    train, evaluation = frames
    comparison = {}
    for (target, column, population), result, run_id in zip(targets, results, run_ids, strict=True):
        columns = [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, target]
        logged = log_propensity_run(
            tracking_uri=tracking.tracking_uri,
            experiment=tracking.experiment,
            artifact_root=tracking.artifact_root,
            target=target,
            params={
                "model": "HistGradientBoostingClassifier",
                "train_as_of": f"{snapshots[-3]:%Y-%m-%d}",
                "eval_as_of": f"{snapshots[-2]:%Y-%m-%d}",
                "score_as_of": f"{snapshots[-1]:%Y-%m-%d}",
                "features": ",".join(NUMERIC_FEATURES + CATEGORICAL_FEATURES),
                "population": "customers with an earlier order" if population else "all customers",
                "max_train_rows": max_train_rows,
            },
            metrics=result.metrics,
            calibration=result.calibration.to_pandas(),  # ml.tracking logs pandas records
            model=result.model,
            tags=tracking.tags,
            run_id=run_id,
            # the logged model is refitted on the evaluation snapshot (ml/propensity.py)
            example=input_example(result.model, evaluation),
            datasets={
                "training": frame_dataset(
                    train.select(columns), f"feature_snapshot {snapshots[-3]:%Y-%m-%d}", tracking.data_source, target
                ),
                "evaluation": frame_dataset(
                    evaluation.select(columns),
                    f"feature_snapshot {snapshots[-2]:%Y-%m-%d}",
                    tracking.data_source,
                    target,
                ),
            },
        )
        scored = result.scores.rename({"score": column})
        run.scores = run.scores.join(scored, on="customer_key", how="left", maintain_order="left").with_columns(
            pl.lit(logged.run_id).alias(f"{column}_run_id")
        )
        run.metrics[target] = result.metrics
        run.runs[target] = logged.run_id
        comparison[target] = {
            "model AUC": result.metrics["auc"],
            "recency-only AUC": result.metrics["baseline_recency_auc"],
            "model PR-AUC": result.metrics["pr_auc"],
            "recency-only PR-AUC": result.metrics["baseline_recency_pr_auc"],
        }
    return comparison
