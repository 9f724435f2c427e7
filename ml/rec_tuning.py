"""Hyperparameter search for the LightFM hybrid: every trial is an MLflow run in one experiment,
all on the same split, so the MLflow UI compares them directly (sort by ndcg_at_10)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

from mlflow.tracking import MlflowClient

from ml.rec_evaluation import PRIMARY_SLICE, Split, evaluate_split
from ml.recommender import RecData, RecommenderParams

# the search space: loss, components, learning rate, epochs, feature weighting (and decay)
DEFAULT_SPACE = {
    "loss": ["warp", "bpr"],
    "no_components": [32, 64],
    "learning_rate": [0.05],
    "epochs": [30],
    "feature_weight": [0.03, 0.1, 0.3, 1.0],
    "half_life_days": [0.0, 30.0],
}


def trials(space: dict[str, list]) -> list[dict]:
    """The full grid, in a fixed order."""
    names = sorted(space)
    return [dict(zip(names, values, strict=False)) for values in itertools.product(*(space[n] for n in names))]


def tune(
    data: RecData,
    split: Split,
    base: RecommenderParams,
    space: dict[str, list],
    tracking_uri: str,
    experiment: str,
    artifact_root: Path | None = None,
    search_params: dict[str, str] | None = None,
    search_dicts: dict[str, dict] | None = None,
) -> list[dict]:
    """Run every trial; returns [{params..., metric: value...}] best first by warm NDCG@k. The
    parent 'search' run carries `search_params` and `search_dicts` (JSON artifacts by file name):
    what every trial shares, such as the typing of the feature columns."""
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = artifact_root.resolve().as_uri() if artifact_root else None
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    results = []
    parent = client.create_run(experiment_id, run_name="search", tags={"split": str(split.describe())})
    try:
        for key, value in (search_params or {}).items():
            client.log_param(parent.info.run_id, key, value)
        for name, content in (search_dicts or {}).items():
            client.log_dict(parent.info.run_id, content, name)
        for n, trial in enumerate(trials(space)):
            params = replace(base, **trial)
            metrics = evaluate_split(data, split, params, models=["lightfm_hybrid"])["lightfm_hybrid"]
            run = client.create_run(
                experiment_id,
                run_name=f"trial-{n:03d}",
                tags={"mlflow.parentRunId": parent.info.run_id, "split": str(split.describe())},
            )
            for key, value in params.as_dict().items():
                client.log_param(run.info.run_id, key, value)
            flat = {
                (name if slice_name == PRIMARY_SLICE else f"{slice_name}_{name}"): float(value)
                for slice_name, by_metric in metrics.items()
                for name, value in by_metric.items()
            }
            for key, value in flat.items():
                if value == value:  # NaN (an empty slice) is left out
                    client.log_metric(run.info.run_id, key, value)
            client.set_terminated(run.info.run_id)
            results.append({**trial, **flat, "run_id": run.info.run_id})
    finally:
        client.set_terminated(parent.info.run_id)
    key = f"ndcg_at_{base.k}"
    return sorted(results, key=lambda r: -r[key])
