"""The recommender's retraining cadence (issue 37): between retrains a run scores today's
customers with the champion and trains nothing; past the cadence, with another configuration or
when forced, it retrains. Small frames, no pipeline run: one real training makes the champion."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sqlite3
from dataclasses import replace

import mlflow.tracking._tracking_service.utils as tracking_utils
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from ml import rec_run
from ml.promotion import GateRule
from ml.rec_evaluation import holdout_shortfall, holdout_start
from ml.rec_lists import USER_FEATURES, ListRules
from ml.rec_run import Cadence, plan_refresh, refresh_recommender
from ml.recommender import RecommenderParams, TrainingFrames
from ml.tracking import Tracking

MODEL = "tessera-recommender"
DAY0 = dt.datetime(2026, 9, 1)
LAST_DAY = dt.date(2026, 10, 20)  # the champion's data ends on this day
# small and quick (k stays 10: the gate judges NDCG@10); feature_weight 1: the catalogue's categories carry the tastes to new products
# the LightFM hybrid: these tests rank new customers and new products from their features
PARAMS = RecommenderParams(family="lightfm_hybrid", no_components=4, epochs=10, seed=3, feature_weight=1.0, test_days=7)
RULES = ListRules(k=4, max_per_category=4)
GATE = GateRule(min_users=1, seed=42)
TASTES = ("a", "b")


def _customers(n_per_taste: int = 24) -> pl.DataFrame:
    keys = [f"{t}{n:02d}" for t in TASTES for n in range(n_per_taste)]
    return pl.DataFrame({"customer_key": keys, "personalization_consent": [True] * len(keys)})


def _features(customers: pl.DataFrame) -> pl.DataFrame:
    """Every user feature, the taste in age_band (a customer's first letter), the rest constant."""
    keys = customers["customer_key"]
    constant = {c: pl.lit("x") for c in USER_FEATURES if c != "age_band"}
    return pl.DataFrame({"customer_key": keys}).with_columns(age_band=keys.str.slice(0, 1), **constant)


def _items(extra: list[tuple[str, str]] = ()) -> pl.DataFrame:
    rows = [(f"{t}_item{j}", t) for t in TASTES for j in range(8)] + list(extra)
    return pl.DataFrame(
        {
            "product_id": [r[0] for r in rows],
            "category": [r[1] for r in rows],
            "brand": "house",
            "price_band": "mid",
            "is_active": True,
        }
    )


def _interactions(customers: pl.DataFrame, last_day: dt.date) -> pl.DataFrame:
    """Each customer buys a product of their taste every ten days up to `last_day`, a new one each
    time: customer n buys item (n + k) % 8 on day n % 10 + 10 k (deterministic), so most also buy
    a product new to them in the last week (the gate's warm slice)."""
    rows = []
    days = (last_day - DAY0.date()).days
    for n, key in enumerate(customers["customer_key"]):
        for k, d in enumerate(range(n % 10, days + 1, 10)):
            rows.append((key, f"{key[0]}_item{(n + k) % 8}", "purchase", DAY0 + dt.timedelta(days=d, hours=9)))
    return pl.DataFrame(
        rows, schema=["customer_key", "product_id", "interaction_type", "occurred_at"], orient="row"
    ).with_columns(pl.col("occurred_at").cast(pl.Datetime("us")))


def _frames(customers: pl.DataFrame, items: pl.DataFrame, interactions: pl.DataFrame) -> TrainingFrames:
    """As tessera.mlio.recommender.read_training_frames builds them."""
    features = _features(customers)
    frames = TrainingFrames(customers, items, interactions, features)
    frames.skip_reason = holdout_shortfall(interactions, PARAMS.test_days)
    frames.split_at = holdout_start(interactions["occurred_at"], PARAMS.test_days)
    frames.features_then, frames.features_at = features, frames.split_at.date()
    return frames


class Log:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)

    warning = info


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A champion trained for real (refresh_recommender with no champion: evaluate, fit, log,
    register, gate) on data up to LAST_DAY; its MLflow store."""
    root = tmp_path_factory.mktemp("cadence")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    keep_uri = tracking_utils._tracking_uri
    with pytest.MonkeyPatch.context() as mp:  # ml.tracking sets MLFLOW_TRACKING_URI: put back after
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        customers = _customers()
        frames = _frames(customers, _items(), _interactions(customers, LAST_DAY))
        log = Log()
        run = refresh_recommender(frames, PARAMS, RULES, _tracking(uri, root), GATE, Cadence(7), log)
    tracking_utils._tracking_uri = keep_uri
    assert run.refresh.kind == "retrain" and run.refresh.reason == "retrained: no champion yet"
    assert run.decision.promoted, run.decision.summary()
    return root, run


def _tracking(uri: str, root) -> Tracking:
    return Tracking(uri, "tessera-recommender", root / "artifacts", {"dagster_run_id": "test"}, MODEL)


@pytest.fixture
def store(trained, tmp_path, monkeypatch):
    """A copy of the trained store for one test (it may add runs and versions)."""
    root, run = trained
    shutil.copy(root / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return _tracking(uri, root), run


def _versions(tracking: Tracking) -> list[str]:
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))


def test_a_training_run_logs_how_far_its_data_goes_and_restarts_the_cadence(store):
    tracking, run = store
    params = MlflowClient(tracking_uri=tracking.tracking_uri).get_run(run.logged.run_id).data.params
    assert params["trained_through"] == "2026-10-20"
    assert run.refresh.next_retrain_due == dt.date(2026, 10, 27)


def test_within_the_cadence_the_champion_scores_todays_customers_and_nothing_is_trained(store, monkeypatch):
    tracking, trained_run = store
    champion_version = trained_run.decision.challenger_version

    def refuse(*args, **kwargs):
        raise AssertionError("nothing may be trained or evaluated within the cadence")

    monkeypatch.setattr(rec_run, "fit_family", refuse)
    monkeypatch.setattr(rec_run, "choose_family", refuse)
    monkeypatch.setattr(rec_run, "evaluate_per_user", refuse)
    versions_before = _versions(tracking)
    # the lists the champion published at training time, to pick what today changes
    published = pl.from_pandas(trained_run.recs.astype({"customer_key": str, "product_id": str}))
    buyer_top = published.filter((pl.col("customer_key") == "a03") & (pl.col("rank") == 1))["product_id"][0]

    # the next day: a03 buys its top product, b05 withdraws consent, a new customer arrives, a
    # product is withdrawn from sale and a new one of taste "a" joins the catalogue
    today = LAST_DAY + dt.timedelta(days=1)
    customers = pl.concat([_customers(), pl.DataFrame({"customer_key": ["a99"], "personalization_consent": [True]})])
    customers = customers.with_columns(personalization_consent=pl.col("customer_key") != "b05")
    items = _items(extra=[("a_item_new", "a")]).with_columns(is_active=pl.col("product_id") != "b_item0")
    bought = pl.DataFrame(
        {
            "customer_key": ["a03"],
            "product_id": [buyer_top],
            "interaction_type": ["purchase"],
            "occurred_at": [dt.datetime.combine(today, dt.time(10))],
        }
    ).with_columns(pl.col("occurred_at").cast(pl.Datetime("us")))
    interactions = pl.concat([_interactions(_customers(), LAST_DAY), bought])
    log = Log()
    run = refresh_recommender(_frames(customers, items, interactions), PARAMS, RULES, tracking, GATE, Cadence(7), log)

    assert run.refresh.kind == "score_only" and run.decision is None and run.logged is None
    assert run.refresh.reason == (
        f"scored with champion version {champion_version} trained on data up to 2026-10-20; "
        "next retrain due 2026-10-27 (retrain_every_days 7; data up to 2026-10-21)"
    )
    assert _versions(tracking) == versions_before  # no new model version
    lists = pl.from_pandas(run.recs.astype(dict.fromkeys(("customer_key", "product_id", "source"), str)))
    assert set(lists["model_version"].cast(pl.String)) == {champion_version}
    assert lists["customer_key"].n_unique() == len(customers)
    # today's purchase is left out of the buyer's list; the withdrawn product of everyone's
    assert buyer_top not in lists.filter(pl.col("customer_key") == "a03")["product_id"].to_list()
    assert "b_item0" not in lists["product_id"].to_list()
    by_customer = dict(lists.filter(pl.col("rank") == 1).select("customer_key", "source").iter_rows())
    assert by_customer["b05"] == "popularity"  # consent withdrawn: nothing personal
    assert by_customer["a99"] == "cold_start_features"  # new: ranked from features
    # the new product, unknown to the champion, is scored from its category (taste "a"): it is
    # listed, and scores higher for every taste-"a" customer than for any taste-"b" one
    new = lists.filter((pl.col("product_id") == "a_item_new") & (pl.col("source") == "personalised"))
    by_taste = new.group_by(pl.col("customer_key").str.slice(0, 1).alias("taste")).agg(
        low=pl.col("score").min(), high=pl.col("score").max(), lists=pl.len()
    )
    taste = {row["taste"]: row for row in by_taste.iter_rows(named=True)}
    assert taste["a"]["lists"] >= 20 and taste["a"]["low"] > taste["b"]["high"]

    # MLflow: a scoring run that says why, with no model logged
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    scoring = client.get_run(run.scoring_run_id)
    assert scoring.data.tags["refresh"] == "score_only"
    assert scoring.data.tags["refresh_reason"] == run.refresh.reason
    assert scoring.data.params["champion_version"] == champion_version
    assert scoring.data.params["next_retrain_due"] == "2026-10-27"
    assert scoring.data.metrics["customers"] == len(customers)
    assert client.list_artifacts(run.scoring_run_id) == []
    # named as every run is: model, the day it started, short id (issue 39)
    assert re.fullmatch(rf"score_with_champion \d{{4}}-\d{{2}}-\d{{2}} {run.scoring_run_id[:6]}", scoring.info.run_name)
    assert scoring.info.status == "FINISHED"


@pytest.mark.parametrize(
    ("data_up_to", "cadence", "params", "retrain", "reason"),
    [
        (dt.date(2026, 10, 26), Cadence(7), PARAMS, False, "scored with champion version 1 trained on data up to"),
        (
            dt.date(2026, 10, 27),
            Cadence(7),
            PARAMS,
            True,
            "retrained: champion version 1 was trained on data up to 2026-10-20, today's goes to 2026-10-27; retrain due 2026-10-27",
        ),
        (dt.date(2026, 10, 21), Cadence(7, force=True), PARAMS, True, "retrained: force_retrain was set"),
        (dt.date(2026, 10, 21), Cadence(1), PARAMS, True, "retrained: retrain_every_days is 1 (every run)"),
        (dt.date(2026, 10, 21), Cadence(0), PARAMS, True, "retrained: retrain_every_days is 0 (every run)"),
        (
            dt.date(2026, 10, 21),
            Cadence(7),
            replace(PARAMS, no_components=8, half_life_days=10.0),
            True,
            "retrained: champion version 1 was trained with another no_components, half_life_days",
        ),
        (dt.date(2026, 10, 19), Cadence(7), PARAMS, True, "retrained: today's data ends on 2026-10-19, before"),
    ],
    ids=["six-days-old", "seven-days-old", "forced", "daily", "zero", "changed-config", "replay-of-the-past"],
)
def test_the_plan_retrains_past_the_cadence_on_another_configuration_or_when_forced(
    store, data_up_to, cadence, params, retrain, reason
):
    tracking, _ = store
    plan = plan_refresh(tracking, params, data_up_to, cadence)
    assert plan.retrain is retrain
    assert plan.reason.startswith(reason), plan.reason


def test_a_forced_run_within_the_cadence_goes_to_training_with_the_reason_on_its_mlflow_runs(store, monkeypatch):
    tracking, _ = store
    calls = []
    trained = rec_run.RecommenderRun(recs=None, lists_from="challenger")
    monkeypatch.setattr(rec_run, "train_and_rank", lambda *args: calls.append(args) or trained)
    customers = _customers()
    frames = _frames(customers, _items(), _interactions(customers, LAST_DAY + dt.timedelta(days=1)))
    run = refresh_recommender(frames, PARAMS, RULES, tracking, GATE, Cadence(7, force=True), Log())
    assert run is trained and len(calls) == 1
    # the training run's MLflow runs carry the reason (the tags of the Tracking it is given)
    assert calls[0][3].tags == {
        "dagster_run_id": "test",
        "refresh": "retrain",
        "refresh_reason": "retrained: force_retrain was set",
    }


def test_without_a_logged_training_date_the_champion_is_retrained(store):
    """A champion registered before the cadence existed logged no trained_through: retrain once."""
    tracking, _ = store
    # the store is this test's copy: its logged params can be rewritten (MLflow cannot delete one)
    with sqlite3.connect(tracking.tracking_uri.removeprefix("sqlite:///")) as db:
        db.execute("delete from params where key = 'trained_through'")
    plan = plan_refresh(tracking, PARAMS, dt.date(2026, 10, 21), Cadence(7))
    assert plan.retrain and plan.reason == "retrained: champion version 1 logged no trained_through date"


def test_a_champion_auto_chose_is_todays_configuration_whatever_its_family():
    from ml.rec_lists import ITEM_FEATURES, USER_FEATURES
    from ml.rec_run import config_changes

    today = RecommenderParams()  # family "auto"
    logged = {k: str(v) for k, v in today.as_dict().items()}
    logged.update(user_features=",".join(USER_FEATURES), item_features=",".join(ITEM_FEATURES))
    # auto trained EASE: the same configuration, scored within the cadence
    assert config_changes({**logged, "family": "ease", "family_requested": "auto"}, today) == []
    # a champion trained as EASE because the configuration said so: auto is another configuration
    assert config_changes({**logged, "family": "ease", "family_requested": "ease"}, today) == ["family"]
    # logged before families: the LightFM hybrid was asked for
    old = {k: v for k, v in logged.items() if k != "family"}
    assert config_changes(old, today) == ["family"]
    assert config_changes(old, replace(today, family="lightfm_hybrid")) == []
