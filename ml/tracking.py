"""MLflow: a local tracking store, one run per training, the model logged with its id mappings.

What a data scientist meets in the MLflow UI (docs/recommender.md, "MLflow"):
- every experiment has a description (`mlflow.note.content`), tags, and the experiment kind of
  model training (`mlflow.experimentKind` = `custom_model_development`, what MLflow 3's UI calls
  "Machine learning" as against "GenAI apps & agents"); set when missing, never over an edit;
- every run is named `<model> <date> <run id's first 6 characters>`, the date (UTC) the run
  started, and starts before the fit (training_run), so its duration is the training's;
- a registered or logged model has a signature, an input example and its training data as a
  dataset input (`mlflow.data`, context `training`): a summary or the frame's schema, its digest
  and where it was read from, never its rows;
- links into the UI carry `workflowType=machine_learning` (run_url): MLflow 3.17's UI takes the
  view (GenAI or model training) from that parameter or from the "GenAI | Model training" switch
  in its sidebar (per browser, default GenAI), not from the experiment's tag.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import math
import pickle
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import mlflow.data
import mlflow.pyfunc
import pandas as pd
import polars as pl
from mlflow.entities import Metric, Param
from mlflow.models import ModelSignature
from mlflow.tracking.context.registry import resolve_tags
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

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
            run_path(experiment_id, run.info.run_id),
            children or {},
        )


@dataclass(frozen=True)
class Tracking:
    """Where a model's runs go: the MLflow server, the experiment, the artifact store, the tags
    every run carries and, for a registered model, its name; `data_source`, where the training
    data was read from (a URI: the warehouse file), names the source of each run's dataset inputs."""

    tracking_uri: str
    experiment: str
    artifact_root: Path
    tags: dict[str, str] = field(default_factory=dict)
    model_name: str | None = None
    data_source: str | None = None


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


# MLflow 3's experiment kind: the UI's "Machine learning" (model training) as against "GenAI apps &
# agents" (mlflow/server/js: ExperimentKind.CUSTOM_MODEL_DEVELOPMENT; the UI's kind selector
# writes this tag)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the description the UI shows (Markdown), of an experiment or a run
# the UI's view in a link: MLflow 3.17 takes it from this parameter, else from its sidebar switch
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


@dataclass(frozen=True)
class About:
    """What the MLflow UI says about an experiment: a description (Markdown) and tags."""

    description: str
    domain: str  # recommender, propensity, segments, ...
    docs: str  # the page of docs/ that explains its runs

    def tags(self) -> dict[str, str]:
        return {
            NOTE_TAG: self.description,
            EXPERIMENT_KIND_TAG: MODEL_TRAINING,
            "tessera.domain": self.domain,
            "tessera.docs": self.docs,
            "owner": "team:data-science",
        }


RECOMMENDER = About(
    "**tessera recommender.** One run per retrain of the published recommender, named "
    "`<family> <date> <run id>`: the family evaluated on a time holdout (the warm slice under plain "
    "metric names, the other slices prefixed `warm_all_`, `cold_users_`, `cold_items_`; a slice with "
    "no user logs no metric, `slice_users.*` params give every slice's size), each baseline and "
    "other family as a nested run with the same metric names (and on the warm slice in this run as "
    "`<model>_<metric>`), the model refitted on every interaction and registered (aliases "
    "`champion`, `challenger`), and the promotion gate's decision (`gate_*` tags). The training "
    "data is the run's dataset input. Runs named "
    "`score_with_champion` trained nothing: the champion scored that day's customers. Customers are "
    "known only by pseudonymous keys.",
    "recommender",
    "docs/recommender.md",
)
PROPENSITY = About(
    "**tessera propensity models.** One run per target per pipeline run (`purchased_next_30d`, "
    "`churned_next_30d`): gradient-boosted trees trained on one customer feature snapshot and "
    "evaluated out of time on the next against a recency-only baseline (AUC, PR-AUC, Brier, "
    "calibration); the logged model is refitted on the evaluation snapshot and scores the current "
    "one. Both snapshots are dataset inputs (training, evaluation).",
    "propensity",
    "docs/segments_and_scores.md",
)
SEGMENTS = About(
    "**tessera behavioural clusters.** One run per pipeline run: K-Means on the standardised "
    "behavioural features of customers with an order, k chosen by silhouette (metric `silhouette` "
    "by step k), the cluster sizes, and profiles and descriptions as artifacts.",
    "segments",
    "docs/segments_and_scores.md",
)
TUNING = About(
    "**tessera recommender tuning** (`tessera recommend tune`). A parent run per search "
    "(`tune <date> <run id>`: the split, the budgets, the winner and its test metrics `test_*`) and "
    "a nested run per trial (`<family> <settings>, trial <n> <date> <run id>`, validation metrics "
    "`val_*`). Chosen on validation, tested once.",
    "recommender",
    "docs/recommender.md",
)
EVALUATION = About(
    "**tessera recommender evaluation** (`tessera recommend evaluate`): one run per evaluation, "
    "every model's metrics on every slice and the feature report.",
    "recommender",
    "docs/recommender.md",
)


def run_path(experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI, relative to its address, in the model-training view."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/{run_path(experiment_id, run_id)}"


def experiment_for(client: mlflow.MlflowClient, name: str, artifact_root: Path | None, about: About | None) -> str:
    """The experiment's id, created if new (its artifacts under `artifact_root`). `about`'s tags
    are set where the experiment has none of that name yet: a description or kind edited in the
    UI stays, and an experiment of an older store gets them on its next run."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = None
        if artifact_root is not None:
            artifact_root.mkdir(parents=True, exist_ok=True)
            location = artifact_root.resolve().as_uri()
        return client.create_experiment(name, artifact_location=location, tags=about.tags() if about else None)
    for key, value in (about.tags() if about else {}).items():
        if key not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def ensure_experiment(tracking_uri: str, name: str, artifact_root: Path, about: About | None = None) -> str:
    mlflow.set_tracking_uri(tracking_uri)
    return experiment_for(mlflow.MlflowClient(tracking_uri=tracking_uri), name, artifact_root, about)


def run_name(model: str, run_id: str, start_time_ms: int) -> str:
    """`<model> <date> <short id>`: the UTC date the run started and the run id's first 6
    characters, so retrains of one model differ in the runs table and in compare."""
    day = dt.datetime.fromtimestamp(start_time_ms / 1000, dt.UTC).date()
    return f"{model} {day:%Y-%m-%d} {run_id[:6]}"


def new_run(
    client: mlflow.MlflowClient,
    experiment_id: str,
    model: str,
    tags: dict[str, str],
    parent_run_id: str | None = None,
    start_time: int | None = None,
) -> str:
    """A run (status RUNNING) named run_name, tagged `model`, started now or at `start_time`
    (ms since the epoch); nested under `parent_run_id`. Its id."""
    tags = {**tags, "model": model} | ({MLFLOW_PARENT_RUN_ID: parent_run_id} if parent_run_id else {})
    # with the user and the source the fluent API's runs carry (the runs table's User column)
    run = client.create_run(experiment_id, start_time=start_time, tags=resolve_tags(tags))
    client.update_run(run.info.run_id, name=run_name(model, run.info.run_id, run.info.start_time))
    return run.info.run_id


def rename_run(tracking_uri: str, run_id: str, model: str) -> None:
    """The run named (and tagged) for another model: the family "auto" chose."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    client.update_run(run_id, name=run_name(model, run_id, client.get_run(run_id).info.start_time))
    client.set_tag(run_id, "model", model)


@contextlib.contextmanager
def training_run(tracking: Tracking, model: str, about: About, tags: dict[str, str] | None = None) -> Iterator[str]:
    """A run that starts now, before the fit, and ends with the block: its duration is the
    training's. FAILED if the block raises. Yields the run id, for the log_* functions."""
    mlflow.set_tracking_uri(tracking.tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri)
    experiment_id = experiment_for(client, tracking.experiment, tracking.artifact_root, about)
    run_id = new_run(client, experiment_id, model, {**tracking.tags, **(tags or {})})
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


def _open(tracking_uri: str, experiment_id: str, run_id: str | None, model: str, tags: dict[str, str]):
    """The fluent API's run: `run_id` resumed (training_run), else a new one named for `model`."""
    if run_id is None:
        run_id = new_run(mlflow.MlflowClient(tracking_uri=tracking_uri), experiment_id, model, tags)
    return mlflow.start_run(run_id=run_id)


def interactions_dataset(interactions: pl.DataFrame, digest: str, source: str | None):
    """The recommender's training data as an MLflow dataset: per interaction type, how many and
    from when to when (no customer, no product), with `digest` (the training data fingerprint,
    ml.rec_lists.training_fingerprint: interactions, customers and products) and its source."""
    summary = (
        interactions.group_by(pl.col("interaction_type").cast(pl.String))
        .agg(
            interactions=pl.len().cast(pl.Int64),
            first_at=pl.col("occurred_at").min(),
            last_at=pl.col("occurred_at").max(),
        )
        .sort("interaction_type")
    )
    return mlflow.data.from_polars(summary, source=_source(source), name="training_interactions", digest=digest)


def frame_dataset(frame: pl.DataFrame, name: str, source: str | None, targets: str | None = None):
    """A training or evaluation frame as an MLflow dataset: its schema, row count and digest
    (computed by MLflow from the rows) and source; customer keys are left out."""
    frame = frame.drop("customer_key", strict=False)
    return mlflow.data.from_polars(frame.cast(_exact_types(frame)), source=_source(source), name=name, targets=targets)


def _source(uri: str | None):
    """A local file's dataset source, built as such: MLflow's resolver finds two kinds of source
    for a file URI and warns. Another URI is left to the resolver, None is the calling code."""
    if uri is None or not uri.startswith("file:"):
        return uri
    from mlflow.data.sources import LocalArtifactDatasetSource

    return LocalArtifactDatasetSource(uri)


def _exact_types(frame: pl.DataFrame) -> dict[str, type[pl.DataType]]:
    """Casts to the types MLflow's dataset schema names exactly (it warns of every other)."""
    casts = {}
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Enum | pl.Categorical):
            casts[name] = pl.String
        elif dtype == pl.Date:
            casts[name] = pl.Datetime
        elif isinstance(dtype, pl.Decimal) or dtype.is_unsigned_integer():
            casts[name] = pl.Float64 if isinstance(dtype, pl.Decimal) else pl.Int64
    return casts


def recommender_signature(family: str, k: int) -> ModelSignature:
    """What the pyfunc takes and returns (LightFMRecommender, FamilyRecommender): customers by
    key (the hybrid) or by their history (the other families), `k` as a parameter."""
    inputs = [ColSpec("string", "customer_key")]
    if family != "lightfm_hybrid":
        inputs.append(ColSpec("string", "product_id"))
    outputs = [
        ColSpec("string", "customer_key"),
        ColSpec("long", "rank"),
        ColSpec("string", "product_id"),
        ColSpec("double", "score"),
    ]
    return ModelSignature(Schema(inputs), Schema(outputs), ParamSchema([ParamSpec("k", "long", k)]))


def recommender_example(bundle: dict, family: str) -> pd.DataFrame:
    """The pyfunc's input example: two customers the hybrid knows (pseudonymous keys, as in the
    bundle and id_mappings.json beside it: an erasure retires the whole run, ml/forget.py), or a
    made-up customer's history of the catalogue's first three products for the other families."""
    if family == "lightfm_hybrid":
        return pd.DataFrame({"customer_key": list(itertools.islice(bundle["user_id_map"], 2))})
    items = [str(i) for i in itertools.islice(bundle["item_ids"], 3)]
    return pd.DataFrame({"customer_key": ["example_customer"] * len(items), "product_id": items})


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
    run_id: str | None = None,
    dataset=None,
) -> LoggedRun:
    """The published family's run (params, metrics, the model bundle with its signature and input
    example, the training `dataset`) plus, nested under it, one run per other model evaluated on
    the same split, with the same metric names as the family's primary and slice metrics: the
    MLflow UI compares them as rows of one table. `run_id`: the training_run to log into (else a
    new run)."""
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_root, RECOMMENDER)
    refuse_undefined(metrics, family)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    children = {}
    with _open(tracking_uri, experiment_id, run_id, family, tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_dict(mappings, "id_mappings.json")
        if dataset is not None:
            mlflow.log_input(dataset, context="training")
        for name, values in (baselines or {}).items():
            refuse_undefined(values, name)
            child = new_run(client, experiment_id, name, {**tags, "role": "baseline"}, parent_run_id=run.info.run_id)
            _log_batch(client, child, {**(shared_params or {}), "model": name}, values)
            client.set_terminated(child)
            children[name] = child
        with tempfile.TemporaryDirectory() as tmp:
            bundle_path = Path(tmp) / "bundle.pkl"
            with open(bundle_path, "wb") as fh:
                pickle.dump(bundle, fh)
            # MLflow loads the model once to check that the example serves (Model.log)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=LightFMRecommender() if family == "lightfm_hybrid" else FamilyRecommender(),
                artifacts={"bundle": str(bundle_path)},
                pip_requirements=MODEL_PIP_REQUIREMENTS,
                signature=recommender_signature(family, int(bundle["k"])),
                input_example=recommender_example(bundle, family),
            )
        return LoggedRun.of(run, experiment_id, info.model_uri, children)


def _log_batch(client: mlflow.MlflowClient, run_id: str, params: dict, metrics: dict[str, float]) -> None:
    """Params and metrics in one request."""
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
        params=[Param(key, str(value)) for key, value in params.items()],
    )


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
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_root, EVALUATION)
    refuse_undefined(metrics, "evaluation")
    with _open(tracking_uri, experiment_id, None, "evaluate", tags or {}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_dict(feature_report, "feature_report.json")
        return run.info.run_id


def log_scoring_run(
    tracking: Tracking, params: dict, metrics: dict[str, float], tags: dict[str, str], run_id: str | None = None
) -> str:
    """A run that trained nothing: today's lists scored with a registered model (the recommender
    between retrains), in `tracking`'s experiment with its tags and `tags`, or into `run_id` (a
    training_run around the scoring). Params say which model and why; no model is logged. Its run id."""
    experiment_id = ensure_experiment(tracking.tracking_uri, tracking.experiment, tracking.artifact_root, RECOMMENDER)
    tags = {**tracking.tags, **tags}
    with _open(tracking.tracking_uri, experiment_id, run_id, "score_with_champion", tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        return run.info.run_id


def refuse_undefined(metrics: dict[str, float], model: str) -> None:
    """A NaN or infinite metric is a bug upstream (an empty slice must log nothing, see
    ml.rec_evaluation.loggable_metrics), never something to store and compare."""
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise ValueError(f"{model}: {len(bad)} undefined metric(s) would reach MLflow: {', '.join(bad[:5])}")


def propensity_signature(example: pd.DataFrame) -> ModelSignature:
    """The propensity model's input: numeric features as doubles (missing as NaN), categorical
    ones as strings (the model's categories; an unseen or missing one counts as missing); its
    output: the predicted class (the pipeline itself scores with predict_proba)."""
    numeric = set(example.select_dtypes("number").columns)
    inputs = [ColSpec("double" if c in numeric else "string", c, required=c in numeric) for c in example.columns]
    return ModelSignature(Schema(inputs), Schema([ColSpec("long")]))


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
    run_id: str | None = None,
    example: pd.DataFrame | None = None,
    datasets: dict | None = None,
) -> LoggedRun:
    """One MLflow run per propensity target: params, metrics (with the recency baseline), the
    calibration table, the datasets by context (training, evaluation) and the fitted model, with
    a signature and input example when `example` (made-up rows, never a customer's) is given."""
    import mlflow.sklearn

    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_root, PROPENSITY)
    with _open(tracking_uri, experiment_id, run_id, target, {**tags, "target": target}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"bins": calibration.to_dict(orient="records")}, "calibration.json")
        for context, dataset in (datasets or {}).items():
            mlflow.log_input(dataset, context=context)
        info = mlflow.sklearn.log_model(
            sk_model=model,
            name="model",
            pip_requirements=["scikit-learn", "pandas", "numpy"],
            # scikit-learn's own internals of a fitted HistGradientBoostingClassifier (skops format)
            skops_trusted_types=HGB_TRUSTED_TYPES,
            signature=None if example is None else propensity_signature(example),
            input_example=example,
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
    run_id: str | None = None,
    dataset=None,
) -> str:
    """One MLflow run per clustering: params, silhouette per k, cluster sizes, profiles,
    descriptions and the clustered customers' features as the training dataset."""
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_root, SEGMENTS)
    with _open(tracking_uri, experiment_id, run_id, "kmeans", tags) as run:
        mlflow.log_params(params)
        for k, score in silhouette_by_k.items():
            mlflow.log_metric("silhouette", score, step=k)
            mlflow.log_metric(f"silhouette_k{k}", score)
        mlflow.log_metric("chosen_k", params["chosen_k"])
        for cluster, size in sizes.items():
            mlflow.log_metric(f"cluster_{cluster}_size", size)
        if dataset is not None:
            mlflow.log_input(dataset, context="training")
        mlflow.log_dict({"profiles": profiles.to_dict(orient="records")}, "cluster_profiles.json")
        mlflow.log_dict({"z_profiles": z_profiles.to_dict(orient="records")}, "cluster_profiles_sd.json")
        mlflow.log_dict({str(k): v for k, v in descriptions.items()}, "cluster_descriptions.json")
        return run.info.run_id
