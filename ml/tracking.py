"""MLflow: a local tracking store, one run per training, the model logged with its id mappings."""

from __future__ import annotations

import math
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd

MODEL_PIP_REQUIREMENTS = ["lightfm-next>=1.19,<2", "implicit>=0.7,<0.8", "numpy", "scipy", "pandas"]
HGB_TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


class LightFMRecommender(mlflow.pyfunc.PythonModel):
    """Loads the bundle (model + id maps + feature matrices) and returns top-k product ids.

    Input: a DataFrame with a customer_key column holding the customer's published customer_pkey
    (the pipeline trains on pseudonymous keys, docs/privacy.md). Output: customer_key, rank, product_id, score
    over the whole catalogue (the published rules are applied by the pipeline, not here).
    Customers not in the bundle's id map get no rows.
    """

    def load_context(self, context):
        with open(context.artifacts["bundle"], "rb") as fh:
            self.bundle = pickle.load(fh)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import numpy as np

        b = self.bundle
        k = int((params or {}).get("k", b["k"]))
        known = [c for c in model_input["customer_key"].astype(str) if c in b["user_id_map"]]
        idx = np.array([b["user_id_map"][c] for c in known], dtype=np.int64)
        if len(idx) == 0:
            return pd.DataFrame(columns=["customer_key", "rank", "product_id", "score"])
        ub, ue = b["model"].get_user_representations(b["user_features"])
        ib, ie = b["model"].get_item_representations(b["item_features"])
        scores = ue[idx] @ ie.T + ub[idx, None] + ib[None, :]
        return top_k_frame(known, scores, np.asarray(b["item_ids"]), k)


def top_k_frame(keys, scores, items, k: int) -> pd.DataFrame:
    """customer_key, rank, product_id, score: each row of `scores` (one per key) ranked, top k."""
    import numpy as np

    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return pd.DataFrame(
        {
            "customer_key": np.repeat(keys, top.shape[1]),
            "rank": np.tile(np.arange(1, top.shape[1] + 1), len(keys)),
            "product_id": items[top.ravel()],
            "score": np.take_along_axis(scores, top, axis=1).ravel(),
        }
    )


class FamilyRecommender(LightFMRecommender):
    """Loads (as LightFMRecommender) an EASE or ALS bundle (ml/rec_families.family_bundle:
    item-side state only) and
    returns top-k product ids for customers given by their history.

    Input: a DataFrame with customer_key and product_id, one row per product a customer
    interacted with (their history: the bundle holds no customer). Output: customer_key, rank,
    product_id, score over the whole catalogue, history items included (the published rules are
    applied by the pipeline, not here). Products the bundle does not know are ignored."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import numpy as np
        import scipy.sparse as sp

        from ml.rec_families import family_scores

        b = self.bundle
        k = int((params or {}).get("k", b["k"]))
        items = np.asarray([str(i) for i in b["item_ids"]], dtype=object)
        column = pd.Series(np.arange(len(items)), index=items)
        rows = model_input.assign(i=model_input["product_id"].astype(str).map(column)).dropna(subset=["i"])
        keys = pd.unique(rows["customer_key"].astype(str))
        if len(keys) == 0:
            return pd.DataFrame(columns=["customer_key", "rank", "product_id", "score"])
        u = pd.Series(np.arange(len(keys)), index=keys)[rows["customer_key"].astype(str)].to_numpy()
        history = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (u, rows["i"].to_numpy(np.int64))), shape=(len(keys), len(items))
        )
        history.data[:] = 1.0  # duplicates summed: binary again
        if b["family"] == "ease_recent":  # no timestamps here: every item weighs the same, rows sum to 1
            history = sp.diags(1.0 / np.asarray(history.sum(axis=1)).ravel()).astype(np.float32) @ history
        s = family_scores(b, history)
        scores = np.asarray(s.user_emb @ s.item_emb_t) + s.item_bias[None, :]
        return top_k_frame(keys, scores, items, k)


@dataclass
class LoggedRun:
    run_id: str
    experiment_id: str
    model_uri: str
    run_url_path: str
    # nested runs by name (the recommender's baselines): a published baseline list names its run
    children: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, run, experiment_id: str, model_uri: str, children: dict[str, str] | None = None) -> LoggedRun:
        return cls(
            run.info.run_id,
            experiment_id,
            model_uri,
            f"#/experiments/{experiment_id}/runs/{run.info.run_id}",
            children or {},
        )


@dataclass(frozen=True)
class Tracking:
    """Where a model's runs go: the MLflow server, the experiment, the artifact store, the tags
    every run carries and, for a registered model, its name."""

    tracking_uri: str
    experiment: str
    artifact_root: Path
    tags: dict[str, str] = field(default_factory=dict)
    model_name: str | None = None


def log_plot(tracking_uri: str, run_id: str, plot: bytes | None, name: str) -> str:
    """A PNG logged to a run under plots/<name>.png (none: nothing logged); the run's experiment id."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    if plot is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.png"
            path.write_bytes(plot)
            client.log_artifact(run_id, str(path), artifact_path="plots")
    return experiment_id


def ensure_experiment(tracking_uri: str, name: str, artifact_root: Path) -> str:
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_root.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(name, artifact_location=artifact_root.resolve().as_uri())


def log_recommender_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    params: dict,
    metrics: dict[str, float],
    bundle: dict,
    tags: dict[str, str],
    mappings: dict,
    baselines: dict[str, dict[str, float]] | None = None,
    shared_params: dict | None = None,
    family: str = "lightfm_hybrid",
) -> LoggedRun:
    """The published family's run (params, metrics, the model bundle) plus, nested under it, one
    run per other model evaluated on the same split, with the same metric names as the family's
    primary and slice metrics: the MLflow UI compares them as rows of one table."""
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_root)
    refuse_undefined(metrics, family)
    children = {}
    with mlflow.start_run(experiment_id=experiment_id, run_name=family, tags={**tags, "model": family}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_dict(mappings, "id_mappings.json")
        for name, values in (baselines or {}).items():
            refuse_undefined(values, name)
            with mlflow.start_run(
                experiment_id=experiment_id,
                run_name=name,
                nested=True,
                tags={**tags, "model": name, "role": "baseline"},
            ) as child:
                mlflow.log_params({**(shared_params or {}), "model": name})
                mlflow.log_metrics(values)
                children[name] = child.info.run_id
        with tempfile.TemporaryDirectory() as tmp:
            bundle_path = Path(tmp) / "bundle.pkl"
            with open(bundle_path, "wb") as fh:
                pickle.dump(bundle, fh)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=LightFMRecommender() if family == "lightfm_hybrid" else FamilyRecommender(),
                artifacts={"bundle": str(bundle_path)},
                pip_requirements=MODEL_PIP_REQUIREMENTS,
            )
        return LoggedRun.of(run, experiment_id, info.model_uri, children)


def log_evaluation_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    params: dict,
    metrics: dict[str, float],
    feature_report: dict,
    tags: dict[str, str] | None = None,
) -> str:
    """One run of `tessera recommend evaluate`: its params (the model's, the split's and each
    feature column's typing), every model's metrics (ml.rec_evaluation.flatten_metrics) and the
    feature report as feature_report.json. Returns the run id."""
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_root)
    refuse_undefined(metrics, "evaluation")
    with mlflow.start_run(experiment_id=experiment_id, run_name="evaluate", tags=tags or {}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_dict(feature_report, "feature_report.json")
        return run.info.run_id


def log_scoring_run(tracking: Tracking, params: dict, metrics: dict[str, float], tags: dict[str, str]) -> str:
    """A run that trained nothing: today's lists scored with a registered model (the recommender
    between retrains), in `tracking`'s experiment with its tags and `tags`. Params say which
    model and why; no model is logged. Its run id."""
    experiment_id = ensure_experiment(tracking.tracking_uri, tracking.experiment, tracking.artifact_root)
    tags = {**tracking.tags, **tags}
    with mlflow.start_run(experiment_id=experiment_id, run_name="score_with_champion", tags=tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        return run.info.run_id


def refuse_undefined(metrics: dict[str, float], model: str) -> None:
    """A NaN or infinite metric is a bug upstream (an empty slice must log nothing, see
    ml.rec_evaluation.loggable_metrics), never something to store and compare."""
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise ValueError(f"{model}: {len(bad)} undefined metric(s) would reach MLflow: {', '.join(bad[:5])}")


def log_propensity_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    target: str,
    params: dict,
    metrics: dict[str, float],
    calibration: pd.DataFrame,
    model,
    tags: dict[str, str],
) -> LoggedRun:
    """One MLflow run per propensity target: params, metrics (with the recency baseline), the
    calibration table and the fitted model."""
    import mlflow.sklearn

    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_root)
    with mlflow.start_run(experiment_id=experiment_id, run_name=target, tags={**tags, "target": target}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"bins": calibration.to_dict(orient="records")}, "calibration.json")
        info = mlflow.sklearn.log_model(
            sk_model=model,
            name="model",
            pip_requirements=["scikit-learn", "pandas", "numpy"],
            # scikit-learn's own internals of a fitted HistGradientBoostingClassifier (skops format)
            skops_trusted_types=HGB_TRUSTED_TYPES,
        )
        return LoggedRun.of(run, experiment_id, info.model_uri)


def log_clustering_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    params: dict,
    silhouette_by_k: dict[int, float],
    sizes: dict[int, int],
    profiles: pd.DataFrame,
    z_profiles: pd.DataFrame,
    descriptions: dict[int, str],
    tags: dict[str, str],
) -> str:
    """One MLflow run per clustering: params, silhouette per k, cluster sizes, profiles, descriptions."""
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_root)
    with mlflow.start_run(experiment_id=experiment_id, run_name="kmeans", tags=tags) as run:
        mlflow.log_params(params)
        for k, score in silhouette_by_k.items():
            mlflow.log_metric("silhouette", score, step=k)
            mlflow.log_metric(f"silhouette_k{k}", score)
        mlflow.log_metric("chosen_k", params["chosen_k"])
        for cluster, size in sizes.items():
            mlflow.log_metric(f"cluster_{cluster}_size", size)
        mlflow.log_dict({"profiles": profiles.to_dict(orient="records")}, "cluster_profiles.json")
        mlflow.log_dict({"z_profiles": z_profiles.to_dict(orient="records")}, "cluster_profiles_sd.json")
        mlflow.log_dict({str(k): v for k, v in descriptions.items()}, "cluster_descriptions.json")
        return run.info.run_id
