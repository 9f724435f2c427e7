"""The MLflow registry gate: a worse challenger never replaces the champion or its published
recommendations, and the registered artifact reloads in a new process with identical scores."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import duckdb
import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from ml.registry import CHALLENGER, CHAMPION, decide, register
from tests.conftest import with_pkeys


def _logged_model(client: MlflowClient) -> tuple[str, str]:
    # the client API, not mlflow.set_tracking_uri: that also sets MLFLOW_TRACKING_URI in the
    # environment, which would point every later pipeline run in this process at this store
    run = client.create_run(experiment_id="0")
    client.log_dict(run.info.run_id, {"x": 1}, "model/placeholder.json")
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/model", run.info.run_id


def test_gate_promotes_the_first_model_and_a_tie_and_rejects_a_worse_one(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    v1 = register(client, "m", *_logged_model(client))
    first = decide(client, "m", v1, 0.20, None, None)
    assert first.promoted and str(client.get_model_version_by_alias("m", CHAMPION).version) == v1
    v2 = register(client, "m", *_logged_model(client))
    worse = decide(client, "m", v2, 0.19, v1, 0.20)
    assert not worse.promoted and worse.champion_now == v1
    assert str(client.get_model_version_by_alias("m", CHAMPION).version) == v1
    assert str(client.get_model_version_by_alias("m", CHALLENGER).version) == v2
    assert client.get_model_version("m", v2).tags["gate_decision"] == "rejected"
    v3 = register(client, "m", *_logged_model(client))
    tie = decide(client, "m", v3, 0.20, v1, 0.20)
    assert tie.promoted and str(client.get_model_version_by_alias("m", CHAMPION).version) == v3


def test_a_worse_challenger_does_not_replace_the_champion_or_its_recommendations(pipeline):
    from orchestration.definitions import defs
    from orchestration.ml import RECOMMENDER_KEY

    _, settings = pipeline
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    name = settings.mlflow_model_name
    champion = client.get_model_version_by_alias(name, CHAMPION)

    def candidates():
        con = duckdb.connect(str(settings.duckdb_path), read_only=True)
        try:
            return (
                con.execute("select * from ml.recommendation_candidates order by all").fetchall(),
                con.execute("select distinct model_version from publish.customer_recommendations").fetchall(),
            )
        finally:
            con.close()

    before, published_versions = candidates()
    assert published_versions == [(str(champion.version),)]
    # two customers whose lists went missing (as if new since the champion was trained): one
    # ranked by the model, one who withdrew personalisation consent
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        (with_history,) = con.execute(
            "select min(customer_key) from ml.recommendation_candidates where source = 'personalised'"
        ).fetchall()[0]
        (no_consent,) = con.execute("select min(customer_key) from marts.dim_customers where not personalization_consent").fetchall()[0]
        con.execute("delete from ml.recommendation_candidates where customer_key in (?, ?)", [with_history, no_consent])
    finally:
        con.close()
    result = defs.resolve_job_def("tessera_all").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        asset_selection=[RECOMMENDER_KEY],
        run_config={"ops": {"ml__recommendation_candidates": {"config": {"epochs": 1, "no_components": 2}}}},
    )
    assert result.success
    challenger = client.get_model_version_by_alias(name, CHALLENGER)
    assert int(challenger.version) > int(champion.version)
    assert challenger.tags["gate_decision"] == "rejected"
    assert float(challenger.tags["gate_challenger_metric"]) < float(challenger.tags["gate_champion_metric"])
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == str(champion.version)
    after, _ = candidates()
    # the champion rewrote every list with today's rules: the same lists as before (the data did
    # not change), the two missing ones back, every row from the champion's version
    assert len(after) == len(before)
    key = lambda row: row[:3]  # customer_key, rank, product_id  # noqa: E731
    assert [key(r) for r in after] == [key(r) for r in before]
    columns = ["customer_key", "rank", "product_id", "score", "source", "category", "top_n", "max_per_category", "model_run_id", "model_version"]
    frame = pd.DataFrame(after, columns=columns)
    assert set(frame["model_version"]) == {str(champion.version)}
    by_customer = frame.groupby("customer_key")
    assert by_customer.size()[[with_history, no_consent]].tolist() == [10, 10]
    assert by_customer["source"].agg(set)[[with_history, no_consent]].tolist() == [{"personalised"}, {"popularity"}]
    before_scores = pd.DataFrame(before, columns=columns)["score"].to_numpy()
    assert abs(frame["score"].to_numpy() - before_scores).max() < 1e-4
    check = result.get_asset_check_evaluations()
    assert check and all(e.passed for e in check)


RELOAD = """
import json, sys
import mlflow
import pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(f"models:/{sys.argv[2]}@champion")
out = model.predict(pd.DataFrame({"customer_key": json.loads(sys.argv[3])}))
out.to_parquet(sys.argv[4])
"""


def test_the_champion_reloads_in_a_new_process_with_identical_scores(pipeline, tmp_path):
    _, settings = pipeline
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        # the model knows customers by their pseudonymous key (orchestration/ml.py, pseudonymised)
        with_pkeys(con)
        customers = [r[0] for r in con.execute(
            "select distinct customer_pkey(customer_key) from ml.recommendation_candidates order by 1 limit 5"
        ).fetchall()]
    finally:
        con.close()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    here = mlflow.pyfunc.load_model(f"models:/{settings.mlflow_model_name}@champion").predict(
        pd.DataFrame({"customer_key": customers})
    )
    out = tmp_path / "scores.parquet"
    subprocess.run(
        [sys.executable, "-c", RELOAD, settings.mlflow_tracking_uri, settings.mlflow_model_name, json.dumps(customers), str(out)],
        check=True,
    )
    there = pd.read_parquet(out)
    assert len(here) == 5 * 10
    assert here["product_id"].tolist() == there["product_id"].tolist()
    assert here["score"].tolist() == there["score"].tolist()
