"""What a data scientist meets in MLflow (issue 39): runs named by model, date and short id;
experiments described, tagged and of the model-training kind; registered and logged models with a
signature, an input example and their training data as a dataset; no metric for an empty slice and
the slice sizes once; a run that covers the fit; and the Dagster run as a link, both ways.

Tiny synthetic data, no pipeline run: the recommender trains once for the module (the cadence
tests' shop), propensity and clustering on generated frames."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.tracking._tracking_service.utils as tracking_utils
import numpy as np
import pandas as pd
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from ml import rec_run
from ml.clustering_run import cluster_and_log
from ml.propensity import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from ml.propensity_run import score_propensities
from ml.rec_run import Cadence, refresh_recommender
from ml.tracking import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING,
    NOTE_TAG,
    RECOMMENDER,
    Tracking,
    ensure_experiment,
    run_url,
)
from orchestration.metadata import mlflow_run_metadata
from orchestration.ml import tracking_for
from tests.test_clustering import _customers as _behaviours
from tests.test_recommender_cadence import (
    GATE,
    LAST_DAY,
    MODEL,
    PARAMS,
    RULES,
    Log,
    _customers,
    _frames,
    _interactions,
    _items,
)
from tests.test_scores import _snapshot

DAGSTER_RUN = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
# `<model> <YYYY-MM-DD> <first 6 characters of the run id>`
NAME = re.compile(r"(?P<model>.+) (?P<day>\d{4}-\d{2}-\d{2}) (?P<short>[0-9a-f]{6})")


def _settings(root: Path, store: str | None = None) -> SimpleNamespace:
    """What tracking_for and mlflow_run_metadata read of the settings; the tracking store a
    SQLite file, or `store`."""
    return SimpleNamespace(
        mlflow_tracking_uri=store or f"sqlite:///{root / 'mlflow.db'}",
        data_dir=root,
        duckdb_path=root / "tessera.duckdb",
        dagster_ui_url="http://dagster.example:3000",
        mlflow_ui_url="http://mlflow.example:5000",
    )


def _tracking(settings, experiment: str, model_name: str | None = None) -> Tracking:
    """As a Dagster asset builds it (orchestration/ml.py tracking_for), for a stand-in run."""
    context = SimpleNamespace(run_id=DAGSTER_RUN, job_name="daily_refresh")
    return tracking_for(context, settings, experiment, model_name)


class Phases:
    """Each timed block's wall-clock start and end (ml.rec_run's `phase`)."""

    def __init__(self):
        self.spans: dict[str, tuple[float, float]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        started = time.time()
        yield
        self.spans[name] = (started, time.time())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The recommender trained once (no champion yet: evaluate, fit, log, register, gate)."""
    root = tmp_path_factory.mktemp("mlflow-ui")
    settings = _settings(root)
    keep_uri = tracking_utils._tracking_uri
    with pytest.MonkeyPatch.context() as mp:  # ml.tracking sets MLFLOW_TRACKING_URI: put back after
        mp.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
        customers = _customers()
        frames = _frames(customers, _items(), _interactions(customers, LAST_DAY))
        phases = Phases()
        tracking = _tracking(settings, "tessera-recommender", MODEL)
        run = refresh_recommender(frames, PARAMS, RULES, tracking, GATE, Cadence(7), Log(), phases)
    tracking_utils._tracking_uri = keep_uri
    assert run.decision is not None, run.skipped_reason
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    return SimpleNamespace(
        settings=settings, run=run, phases=phases, client=client, logged=client.get_run(run.logged.run_id)
    )


@pytest.fixture
def file_store(tmp_path, monkeypatch) -> str:
    """A file tracking store in the test's folder (a new SQLite store spends seconds creating its
    tables), MLFLOW_TRACKING_URI pointing at it and put back after."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _input_example(model_uri: str) -> pd.DataFrame:
    path = mlflow.artifacts.download_artifacts(model_uri)
    return mlflow.models.Model.load(path).load_input_example(path)


def _children(client: MlflowClient, run) -> list:
    return client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")


def _day(run) -> str:
    return str(dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC).date())


def test_a_retrain_and_its_baselines_are_named_by_model_date_and_short_id(trained):
    run = trained.logged
    # before: every retrain was named `lightfm_hybrid`, indistinguishable in the table and in compare
    assert NAME.fullmatch(run.info.run_name).groups() == ("lightfm_hybrid", _day(run), run.info.run_id[:6])
    assert run.data.tags["mlflow.runName"] == run.info.run_name and run.data.tags["model"] == "lightfm_hybrid"
    children = _children(trained.client, run)
    assert {c.data.tags["model"] for c in children} == {
        "most_popular",
        "recently_popular",
        "item_item",
        "lightfm_ids_only",
        "ease",
        "ease_recent",
        "als",
    }
    for child in children:
        name = NAME.fullmatch(child.info.run_name)
        assert name.groups() == (child.data.tags["model"], _day(child), child.info.run_id[:6])


def test_the_experiment_is_described_tagged_and_of_the_model_training_kind(trained):
    experiment = trained.client.get_experiment(trained.logged.info.experiment_id)
    # the kind the UI's "Machine learning" view stands for (mlflow/server/js, ExperimentKind)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING == "custom_model_development"
    assert experiment.tags[NOTE_TAG] == RECOMMENDER.description
    assert experiment.tags[NOTE_TAG].startswith("**tessera recommender.**")
    assert experiment.tags["tessera.domain"] == "recommender"
    assert experiment.tags["tessera.docs"] == "docs/recommender.md"
    assert experiment.tags["owner"] == "team:data-science"


def test_a_description_edited_in_the_ui_stays_and_an_older_experiment_gets_the_tags(tmp_path, file_store):
    client = MlflowClient(tracking_uri=file_store)
    old = client.create_experiment("older", artifact_location=(tmp_path / "a").as_uri())
    edited = client.create_experiment("edited", artifact_location=(tmp_path / "b").as_uri())
    client.set_experiment_tag(edited, NOTE_TAG, "my own notes")
    for name in ("older", "edited"):
        ensure_experiment(file_store, name, tmp_path / "artifacts", RECOMMENDER)
    assert client.get_experiment(old).tags[NOTE_TAG] == RECOMMENDER.description
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    assert client.get_experiment(edited).tags[NOTE_TAG] == "my own notes"
    assert client.get_experiment(edited).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING


def test_the_registered_model_has_a_signature_an_input_example_and_its_training_data(trained):
    run, client = trained.logged, trained.client
    version = client.get_model_version(MODEL, trained.run.decision.challenger_version)
    assert version.run_id == run.info.run_id
    mlflow.set_tracking_uri(trained.settings.mlflow_tracking_uri)
    info = mlflow.models.get_model_info(f"models:/{MODEL}/{version.version}")
    assert info.signature.inputs.input_names() == ["customer_key"]
    assert info.signature.outputs.input_names() == ["customer_key", "rank", "product_id", "score"]
    assert info.signature.params.to_dict() == [{"name": "k", "type": "long", "default": 10, "shape": None}]
    example = _input_example(info.model_uri)
    assert len(example) == 2 and example["customer_key"].str.match(r"^[ab]\d\d$").all()
    predicted = mlflow.pyfunc.load_model(info.model_uri).predict(example, params={"k": 3})
    assert predicted.groupby("customer_key").size().to_dict() == dict.fromkeys(example["customer_key"], 3)
    # the training data: a summary per interaction type, the fingerprint as its digest, its source
    (inputs,) = run.inputs.dataset_inputs
    assert inputs.dataset.name == "training_interactions"
    assert inputs.dataset.digest == run.data.params["training_data_fingerprint"]
    assert [(t.key, t.value) for t in inputs.tags] == [("mlflow.data.context", "training")]
    assert inputs.dataset.source == f'{{"uri": "{(trained.settings.duckdb_path).as_uri()}"}}'
    assert '"num_rows": 1' in inputs.dataset.profile  # one interaction type: purchases
    assert "interaction_type" in inputs.dataset.schema and "customer_key" not in inputs.dataset.schema


def test_no_metric_is_undefined_and_each_slice_size_is_logged_once(trained):
    run = trained.logged
    metrics = run.data.metrics
    assert metrics and all(math.isfinite(v) for v in metrics.values())
    # every customer has a history and every product was bought before the holdout: two empty slices
    assert run.data.params["empty_slices"] == "cold_users,cold_items"
    assert not [m for m in metrics if m.startswith(("cold_users_", "cold_items_"))]
    sizes = {k: int(v) for k, v in run.data.params.items() if k.startswith("slice_users.")}
    assert sizes == {
        "slice_users.warm": metrics["users"],
        "slice_users.warm_all": sizes["slice_users.warm_all"],
        "slice_users.cold_users": 0,
        "slice_users.cold_items": 0,
    }
    assert sizes["slice_users.warm_all"] >= sizes["slice_users.warm"] > 0
    # before: a `users` metric per model per slice, 16 here; now the primary slice's only (and
    # the gate's own count)
    assert sorted(m for m in metrics if m.endswith("users")) == ["gate_users", "users"]
    # before: 135 metrics, every model on every slice. Now the family on both slices (7 metrics
    # each, under its nested runs' names, and users), the 7 other models on the warm slice, the
    # split's 2 counts, eval_customers and the gate's 4
    assert len(metrics) == 2 * 7 + 1 + 7 * 7 + 2 + 1 + 4
    assert metrics["warm_all_ndcg_at_10"] >= 0 and "warm_all_lightfm_hybrid_ndcg_at_10" not in metrics
    for child in _children(trained.client, run):
        model = child.data.tags["model"]
        assert [m for m in child.data.metrics if m.endswith("users")] == ["users"]
        assert len(child.data.metrics) == 2 * 7 + 1
        assert child.data.metrics["ndcg_at_10"] == metrics[f"{model}_ndcg_at_10"]
        assert f"warm_all_{model}_ndcg_at_10" not in metrics  # the child's other slices: in the child only


def test_the_run_covers_the_fit(trained):
    run = trained.logged
    fit_start, fit_end = trained.phases.spans["fit"]
    evaluation_start, _ = trained.phases.spans["evaluate"]
    # before: the run started once everything was trained, so its duration was the logging's.
    # MLflow's times are whole milliseconds, cut down (int(time.time() * 1000))
    assert run.info.start_time <= int(min(fit_start, evaluation_start) * 1000)
    assert run.info.end_time >= int(max(fit_end, trained.phases.spans["promotion_gate"][1]) * 1000)
    assert run.info.status == "FINISHED"


def test_a_training_that_fails_leaves_its_run_failed_and_named(tmp_path, monkeypatch, file_store):
    settings = _settings(tmp_path, file_store)

    def broken_fit(data, params):
        raise RuntimeError("the fit broke")

    monkeypatch.setattr(rec_run, "fit_family", broken_fit)
    customers = _customers()
    frames = _frames(customers, _items(), _interactions(customers, LAST_DAY))
    tracking = _tracking(settings, "tessera-recommender", MODEL)
    with pytest.raises(RuntimeError, match="the fit broke"):
        refresh_recommender(frames, PARAMS, RULES, tracking, GATE, Cadence(7), Log())
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tessera-recommender").experiment_id])
    assert run.info.status == "FAILED" and NAME.fullmatch(run.info.run_name).group("model") == "lightfm_hybrid"


def test_the_mlflow_run_links_to_its_dagster_run_and_the_dagster_metadata_to_the_mlflow_run(trained):
    run = trained.logged
    dagster_url = f"http://dagster.example:3000/runs/{DAGSTER_RUN}"
    assert run.data.tags["dagster_run_id"] == DAGSTER_RUN
    assert run.data.tags["dagster_run_url"] == dagster_url
    # the run's description (Markdown in the MLflow UI): a link
    assert f"[{DAGSTER_RUN[:8]}]({dagster_url})" in run.data.tags[NOTE_TAG]
    for child in _children(trained.client, run):
        assert child.data.tags["dagster_run_url"] == dagster_url
    metadata = mlflow_run_metadata(trained.settings, run.info.run_id)
    expected = (
        f"http://mlflow.example:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        "?workflowType=machine_learning"
    )
    assert metadata["mlflow_run"].url == expected
    assert run_url("http://mlflow.example:5000/", run.info.experiment_id, run.info.run_id) == expected


def _propensity_frames() -> pl.DataFrame:
    rng = np.random.default_rng(7)
    snapshots = [_snapshot(day, 400, rng) for day in ("2026-08-01", "2026-09-01", "2026-10-01")]
    frames = pl.concat(snapshots).with_columns(churned_next_30d=pl.Series(rng.random(1200) < 0.3))
    # a categorical feature with gaps
    gaps = pl.when(pl.int_range(pl.len()) % 10 == 0).then(None).otherwise(pl.col("last_cart_status"))
    return frames.with_columns(last_cart_status=gaps)


def test_each_propensity_run_is_named_covers_its_fit_and_logs_a_servable_model_with_its_data(
    tmp_path, monkeypatch, file_store
):
    settings = _settings(tmp_path, file_store)
    started = time.time()
    out = score_propensities(_propensity_frames(), 42, 10_000, _tracking(settings, "tessera-propensity"), Log())
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    assert set(out.runs) == {"purchased_next_30d", "churned_next_30d"}
    for target, run_id in out.runs.items():
        run = client.get_run(run_id)
        assert NAME.fullmatch(run.info.run_name).groups() == (target, _day(run), run_id[:6])
        assert run.info.status == "FINISHED" and int(started * 1000) <= run.info.start_time
        assert run.data.tags["dagster_run_url"].endswith(DAGSTER_RUN)
        assert all(math.isfinite(v) for v in run.data.metrics.values())
        contexts = {
            i.dataset.name: next(t.value for t in i.tags if t.key == "mlflow.data.context")
            for i in run.inputs.dataset_inputs
        }
        assert contexts == {"feature_snapshot 2026-08-01": "training", "feature_snapshot 2026-09-01": "evaluation"}
        assert all("customer_key" not in i.dataset.schema for i in run.inputs.dataset_inputs)
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
        names = info.signature.inputs.input_names()
        assert set(names) == set(NUMERIC_FEATURES) | set(CATEGORICAL_FEATURES)
        example = _input_example(info.model_uri)
        # two made-up customers: the medians and 90th percentiles of the training rows, never a row
        assert len(example) == 2 and example["recency_days"].iloc[0] < example["recency_days"].iloc[1]
        model = mlflow.pyfunc.load_model(info.model_uri)
        with_missing = example.assign(last_cart_status=None, sessions=np.nan)
        assert set(model.predict(pd.concat([example, with_missing], ignore_index=True))) <= {0, 1}
    experiment = client.get_experiment_by_name("tessera-propensity")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    assert experiment.tags[NOTE_TAG].startswith("**tessera propensity models.**")


def test_a_clustering_run_is_named_described_and_records_the_features_it_clustered(tmp_path, monkeypatch, file_store):
    settings = _settings(tmp_path, file_store)
    features = _behaviours()
    out = cluster_and_log(features, 2, 4, 10_000, 42, _tracking(settings, "tessera-segments"), Log())
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    run = client.get_run(out.run_id)
    assert NAME.fullmatch(run.info.run_name).groups() == ("kmeans", _day(run), out.run_id[:6])
    (inputs,) = run.inputs.dataset_inputs
    assert inputs.dataset.name == "behavioural_features" and '"num_rows": 600' in inputs.dataset.profile
    assert "customer_key" not in inputs.dataset.schema
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[NOTE_TAG].startswith("**tessera behavioural clusters.**")


def test_a_tuning_search_and_each_trial_are_named_and_each_trial_lasts_as_long_as_its_fit(tmp_path, monkeypatch):
    from ml.rec_tuning import tune, tuning_splits
    from tests.test_rec_tuning import PARAMS as TUNING_PARAMS
    from tests.test_rec_tuning import _shop

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store: no SQLite tables to create
    uri = (tmp_path / "mlruns").as_uri()
    splits = tuning_splits(_shop(), holdout_days=10, validation_days=10)
    spaces = {"ease": {"ease_lambda": [10.0, 500.0]}, "most_popular": {}}
    result = tune(splits, TUNING_PARAMS, ["ease", "most_popular"], tracking_uri=uri, experiment="t", spaces=spaces)
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(result.parent_run_id)
    assert NAME.fullmatch(parent.info.run_name).groups() == ("tune", _day(parent), parent.info.run_id[:6])
    trials = {r.trial.number: r for r in result.search.results}
    assert len(trials) == 3
    for number, trial in trials.items():
        run = client.get_run(trial.run_id)
        assert NAME.fullmatch(run.info.run_name).group("model") == f"{trial.trial.label()}, trial {number:03d}"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        # started when its fit did, not when it was logged
        assert (run.info.end_time - run.info.start_time) / 1000 >= trial.seconds - 0.002
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags[NOTE_TAG].startswith("**tessera recommender tuning**")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
