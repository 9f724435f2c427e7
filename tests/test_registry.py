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

from ml.promotion import GateRule, judge_challenger, judge_first_model
from ml.registry import CHALLENGER, CHAMPION, champion, decide, record_on_run, register
from tests.conftest import with_pkeys


def _logged_model(client: MlflowClient) -> tuple[str, str]:
    # the client API, not mlflow.set_tracking_uri: that also sets MLFLOW_TRACKING_URI in the
    # environment, which would point every later pipeline run in this process at this store
    run = client.create_run(experiment_id="0")
    client.log_dict(run.info.run_id, {"x": 1}, "model/placeholder.json")
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/model", run.info.run_id


def _values(n: int, level: float) -> pd.Series:
    """Per-user NDCG@10 of n users: `level` for every second user, 0 for the others."""
    return pd.Series([level if u % 2 else 0.0 for u in range(n)], index=pd.RangeIndex(n, name="u"))


RULE = GateRule(min_users=200, seed=42)


def test_the_gate_records_its_decision_on_the_version_and_the_run_and_keeps_the_champion_on_a_tie(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    model_uri, run_id = _logged_model(client)
    v1 = register(client, "m", model_uri, run_id)
    first = decide(
        client, "m", v1, None, judge_first_model(_values(300, 0.4), _values(300, 0.1), RULE, "recently_popular")
    )
    record_on_run(client, run_id, first, RULE.resamples, RULE.seed)
    assert first.promoted and first.lists_from == "challenger"
    assert str(client.get_model_version_by_alias("m", CHAMPION).version) == v1
    run = client.get_run(run_id)
    assert run.data.tags["gate_decision"] == "promoted" and run.data.tags["gate_users"] == "300"
    assert run.data.params["gate_min_users"] == "200" and run.data.metrics["gate_users"] == 300
    assert run.data.metrics["gate_difference_low"] > 0

    # a tie (the same per-user values) keeps the champion: the new version is the challenger
    v2 = register(client, "m", *_logged_model(client))
    tie = decide(
        client, "m", v2, v1, judge_challenger(_values(300, 0.4), _values(300, 0.4), RULE, f"champion version {v1}")
    )
    assert not tie.promoted and tie.champion_now == v1 and tie.lists_from == "champion"
    assert str(client.get_model_version_by_alias("m", CHAMPION).version) == v1
    assert str(client.get_model_version_by_alias("m", CHALLENGER).version) == v2
    tags = client.get_model_version("m", v2).tags
    assert tags["gate_decision"] == "kept_champion"
    assert tags["gate_interval"] == "[0.000000, 0.000000]"
    assert tags["gate_reason"].startswith(f"tie with champion version {v1}")

    # a big win on too few users keeps the champion too, and says how many users it had
    v3 = register(client, "m", *_logged_model(client))
    few = decide(
        client, "m", v3, v1, judge_challenger(_values(40, 0.9), _values(40, 0.0), RULE, f"champion version {v1}")
    )
    assert not few.promoted and str(client.get_model_version_by_alias("m", CHAMPION).version) == v1
    tags = client.get_model_version("m", v3).tags
    assert (tags["gate_users"], tags["gate_min_users"]) == ("40", "200") and "gate_interval" not in tags
    assert "only 40 users evaluated" in tags["gate_reason"]


def test_with_no_champion_a_first_model_on_too_few_users_leaves_the_baseline_published(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    v1 = register(client, "m", *_logged_model(client))
    verdict = judge_first_model(_values(4, 0.0), _values(4, 0.5), RULE, "recently_popular")
    decision = decide(client, "m", v1, None, verdict)
    assert not decision.promoted and decision.champion_now is None
    assert decision.lists_from == "baseline:recently_popular"
    assert champion(client, "m") is None
    assert client.get_model_version("m", v1).tags["gate_decision"] == "baseline_published"


def test_a_worse_challenger_does_not_replace_the_champion_or_its_recommendations(warehouse_copy):
    from orchestration.definitions import defs
    from orchestration.ml import RECOMMENDER_KEY

    settings = warehouse_copy
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
        (no_consent,) = con.execute(
            "select min(customer_key) from marts.dim_customers where not personalization_consent"
        ).fetchall()[0]
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
    assert challenger.tags["gate_decision"] == "kept_champion"
    assert float(challenger.tags["gate_challenger_metric"]) < float(challenger.tags["gate_opponent_metric"])
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == str(champion.version)
    after, _ = candidates()
    # the champion rewrote every list with today's rules: the same lists as before (the data did
    # not change), the two missing ones back, every row from the champion's version
    assert len(after) == len(before)
    key = lambda row: row[:3]  # customer_key, rank, product_id  # noqa: E731
    assert [key(r) for r in after] == [key(r) for r in before]
    columns = [
        "customer_key",
        "rank",
        "product_id",
        "score",
        "source",
        "category",
        "top_n",
        "max_per_category",
        "model_run_id",
        "model_version",
    ]
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
        # the model knows customers by their pseudonymous key (tessera/mlio/recommender.py, pseudonymised)
        with_pkeys(con)
        customers = [
            r[0]
            for r in con.execute(
                "select distinct customer_pkey(customer_key) from ml.recommendation_candidates order by 1 limit 5"
            ).fetchall()
        ]
    finally:
        con.close()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    here = mlflow.pyfunc.load_model(f"models:/{settings.mlflow_model_name}@champion").predict(
        pd.DataFrame({"customer_key": customers})
    )
    out = tmp_path / "scores.parquet"
    subprocess.run(
        [
            sys.executable,
            "-c",
            RELOAD,
            settings.mlflow_tracking_uri,
            settings.mlflow_model_name,
            json.dumps(customers),
            str(out),
        ],
        check=True,
    )
    there = pd.read_parquet(out)
    assert len(here) == 5 * 10
    assert here["product_id"].tolist() == there["product_id"].tolist()
    assert here["score"].tolist() == there["score"].tolist()
