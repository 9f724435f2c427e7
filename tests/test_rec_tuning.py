"""`tessera recommend tune` (issue 37, "Honest tuning"): the defaults are trials, selection sees
validation only, the budgets hold, progress is printed, a bad carve-out is named.

(What broke: tune had no --test, so users tuned on a holdout of the last N days and got a
configuration scoring 0.189 on the true split against the defaults' 0.229; 32 trials ran silently
for 7 minutes with no budget.)"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ml.rec_evaluation import prepare_tables
from ml.rec_tuning import (
    DEFAULT_FAMILIES,
    FAMILY_SPACES,
    TuningError,
    carve_validation,
    plan,
    search,
    searchable,
    trials,
    tune,
    tuning_splits,
)
from ml.recommender import RecommenderParams
from tessera.cli import main

T0 = pd.Timestamp("2026-06-01")
PARAMS = RecommenderParams(k=5, seed=3)
# small grids: the tests need the protocol, not the real search space
SPACES = {
    "ease": {"ease_lambda": [1.0, 10.0, 100.0, 500.0]},
    "als": {"als_factors": [4, 8], "als_regularization": [0.05], "als_alpha": [1.0, 10.0]},
    "most_popular": {},
    "recently_popular": {},
}


def _shop(users: int = 90, seed: int = 0) -> pd.DataFrame:
    """Three tastes of 8 items each over 60 days: every customer buys 5 items of their taste and
    one other, on random days (seeded)."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(users), 6)
    taste = user % 3
    own = rng.permuted(np.tile(np.arange(8), (users, 1)), axis=1)[:, :5].ravel()
    item = np.where(np.arange(len(user)) % 6 < 5, taste * 8 + np.resize(own, len(user)), rng.integers(0, 24, len(user)))
    return pd.DataFrame(
        {
            "customer_key": [f"c{u}" for u in user],
            "product_id": [f"p{i}" for i in item],
            "interaction_type": "purchase",
            "occurred_at": T0 + pd.to_timedelta(rng.integers(0, 60, len(user)), unit="D"),
        }
    ).drop_duplicates(["customer_key", "product_id"])


def _recent_then_classic() -> pd.DataFrame:
    """Validation favours recently popular, the test favours most popular.

    A: bought by 20 customers on days 0-19 (all-time hit). B: bought by 5 on days 30-34 (recent
    in train'), then by 6 other customers in validation (days 40-45). In the test (days 50-55),
    6 more customers buy A. Every one of them has one purchase of their own filler item before.
    On validation recently popular ranks B first (the validation purchase), most popular A; in
    the test recently popular still ranks B first and most popular ranks A, the test purchase."""
    rows = [(f"a{n}", "A", n) for n in range(20)]
    rows += [(f"v{n}", f"fv{n}", 1) for n in range(5)] + [(f"v{n}", "B", 30 + n) for n in range(5)]
    rows += [(f"w{n}", f"fw{n}", 2 + n) for n in range(6)] + [(f"w{n}", "B", 40 + n) for n in range(6)]
    rows += [(f"x{n}", f"fx{n}", 3 + n) for n in range(6)] + [(f"x{n}", "A", 50 + n) for n in range(6)]
    frame = pd.DataFrame(rows, columns=["customer_key", "product_id", "day"])
    return frame.assign(interaction_type="purchase", occurred_at=T0 + pd.to_timedelta(frame.pop("day"), unit="D"))


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch) -> str:
    """A file-based tracking store in the test's own folder (a new SQLite store spends seconds
    creating its tables); MLflow 3 keeps the file store behind this switch."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return (tmp_path / "mlruns").as_uri()


@pytest.fixture
def cli_env(tmp_path, monkeypatch, mlflow_uri):
    monkeypatch.setenv("TESSERA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    shop = tmp_path / "interactions.parquet"
    _shop().to_parquet(shop)
    return shop


def test_the_plan_runs_every_family_default_first_then_the_whole_grid_in_a_seeded_order():
    planned = plan(DEFAULT_FAMILIES, RecommenderParams(), seed=42)
    defaults = planned[: len(DEFAULT_FAMILIES)]
    assert [t.family for t in defaults] == list(DEFAULT_FAMILIES)
    assert all(t.default for t in defaults) and not any(t.default for t in planned[len(defaults) :])
    for t in defaults:  # the default trial is RecommenderParams() itself
        assert t.params(RecommenderParams()) == RecommenderParams()
    assert defaults[1].overrides == {"ease_lambda": 500.0}
    # every other grid point once: LightFM 32 - its default, EASE 6 - its default, EASE with
    # recency 24 - its default, ALS 18
    searched = planned[len(defaults) :]
    assert len(searched) == 31 + 5 + 23 + 18
    assert len({(t.family, tuple(sorted(t.overrides.items()))) for t in searched}) == len(searched)
    assert [t.number for t in planned] == list(range(len(planned)))
    # seeded: the same order again, another order for another seed, and not the grid's own order
    again = plan(DEFAULT_FAMILIES, RecommenderParams(), seed=42)
    assert [(t.family, t.overrides) for t in again] == [(t.family, t.overrides) for t in planned]
    other = plan(DEFAULT_FAMILIES, RecommenderParams(), seed=7)
    assert [(t.family, t.overrides) for t in other] != [(t.family, t.overrides) for t in planned]
    lightfm_order = [t.overrides for t in searched if t.family == "lightfm_hybrid"]
    assert lightfm_order != [p for p in trials(FAMILY_SPACES["lightfm_hybrid"]) if p in lightfm_order]
    # a budget samples every family, not the first rows of one grid
    budget = plan(DEFAULT_FAMILIES, RecommenderParams(), 42, max_trials=25)[len(DEFAULT_FAMILIES) :]
    assert {t.family for t in budget} == {"lightfm_hybrid", "ease", "ease_recent", "als"}


def test_without_metadata_features_the_feature_weight_is_not_searched():
    bare = prepare_tables(_shop())
    assert "feature_weight" not in searchable(FAMILY_SPACES, bare)["lightfm_hybrid"]
    lightfm = plan(["lightfm_hybrid"], PARAMS, 1, spaces=searchable(FAMILY_SPACES, bare))
    assert len(lightfm) == 2 * 2 * 2  # loss x components x half-life; the default among them
    items = pd.DataFrame({"product_id": [f"p{i}" for i in range(24)], "category": [f"c{i // 8}" for i in range(24)]})
    described = prepare_tables(_shop(), item_features=items)
    assert searchable(FAMILY_SPACES, described) == FAMILY_SPACES


@pytest.mark.parametrize(
    ("families", "max_trials", "message"),
    [
        (["ease", "als"], 1, "--max-trials 1 is fewer than the 2 default configurations"),
        (["ease", "nope"], None, "unknown famil(ies) ['nope']"),
        (["ease", "ease"], None, "a family is named twice"),
    ],
)
def test_a_plan_the_defaults_cannot_run_in_is_refused_by_name(families, max_trials, message):
    with pytest.raises(TuningError, match=re.escape(message)):
        plan(families, PARAMS, seed=1, max_trials=max_trials)


def test_the_default_is_trial_zero_and_the_winner_is_at_least_as_good_on_validation(mlflow_uri):
    splits = tuning_splits(_shop(), holdout_days=10, validation_days=10)
    result = tune(
        splits,
        PARAMS,
        ["ease", "als"],
        tracking_uri=mlflow_uri,
        experiment="default-first",
        progress=None,
        spaces=SPACES,
    )
    found = result.search
    assert [(r.trial.number, r.trial.family, r.trial.default) for r in found.results[:2]] == [
        (0, "ease", True),
        (1, "als", True),
    ]
    assert found.results[0].trial.overrides == {"ease_lambda": PARAMS.ease_lambda}
    assert len(found.results) == 2 + 3 + 4  # the defaults, then every other grid point
    winner = result.winner.metrics["ndcg_at_5"]
    assert winner == max(r.metrics["ndcg_at_5"] for r in found.results)
    assert all(winner >= d.metrics["ndcg_at_5"] for d in found.defaults)
    assert not result.winner.trial.default  # here a searched point beats both defaults
    # the test figures are of the winner, each family's default and each family's best
    assert {"winner", "default ease", "default als", "best ease", "best als"} == {
        role for roles in result.roles.values() for role in roles
    }


def test_the_test_split_is_never_seen_during_selection(mlflow_uri):
    splits = tuning_splits(_recent_then_classic(), holdout_days=10, validation_days=10)
    assert (str(splits.test.split_at.date()), str(splits.validation.split_at.date())) == ("2026-07-17", "2026-07-07")
    result = tune(
        splits,
        RecommenderParams(k=3),
        ["most_popular", "recently_popular"],
        tracking_uri=mlflow_uri,
        experiment="test-unseen",
        progress=None,
    )
    validation = {r.trial.family: r.metrics["ndcg_at_3"] for r in result.search.results}
    test = {result.search.results[n].trial.family: m["ndcg_at_3"] for n, m in result.test.items()}
    # validation: B is the new purchase, recently popular ranks it first, most popular second
    assert validation == {"recently_popular": 1.0, "most_popular": pytest.approx(1 / np.log2(3))}
    # the test would have chosen most popular (A first); the winner is validation's choice
    assert test == {"recently_popular": pytest.approx(1 / np.log2(3)), "most_popular": 1.0}
    assert result.winner.trial.family == "recently_popular"


def test_the_defaults_always_run_and_a_time_budget_of_zero_runs_nothing_else(mlflow_uri):
    splits = tuning_splits(_shop(), holdout_days=10, validation_days=10)
    progress = io.StringIO()
    planned = plan(["ease", "most_popular"], PARAMS, seed=1, spaces=SPACES)
    found = search(splits.validation_data, splits.validation, PARAMS, planned, time_budget=0, progress=progress)
    assert [r.trial.label() for r in found.results] == ["ease lambda=500 (default)", "most_popular (default)"]
    assert (found.planned, found.stopped_by) == (5, "time budget")
    assert progress.getvalue().splitlines()[-1] == (
        "time budget of 0 s reached: 2 of 5 trials ran, no new trial started after it"
    )


def test_max_trials_two_runs_exactly_two_trials_each_a_nested_mlflow_run(cli_env, tmp_path, mlflow_uri, capsys):
    out = tmp_path / "tune.json"
    argv = ["recommend", "tune", "--interactions", str(cli_env), "--holdout-days", "10", "--families", "ease"]
    assert main([*argv, "--max-trials", "2", "--k", "5", "--out", str(out), "--experiment", "two-trials"]) == 0
    report = json.loads(out.read_text())
    assert (report["trials_run"], report["trials_planned"], report["stopped_by"]) == (2, 2, None)
    assert report["trials"][0]["label"] == "ease lambda=500 (default)"
    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name("two-trials").experiment_id
    parent = client.get_run(report["parent_run_id"])
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.info.run_id for r in children) == sorted(t["run_id"] for t in report["trials"])
    assert all(r.data.params["family"] == "ease" and "val_ndcg_at_5" in r.data.metrics for r in children)
    assert {r.data.params["ease_lambda"] for r in children} == {
        str(t["params"]["ease_lambda"]) for t in report["trials"]
    }
    # the parent: the split, the winner and the test metrics of the winner and of the default
    winner_test = next(t["test"] for t in report["on_test"] if "winner" in t["roles"])
    default_test = next(t["test"] for t in report["on_test"] if "default ease" in t["roles"])
    assert parent.data.metrics["test_ndcg_at_5"] == pytest.approx(winner_test["ndcg_at_5"])
    assert parent.data.metrics["test_default_ease_ndcg_at_5"] == pytest.approx(default_test["ndcg_at_5"])
    assert parent.data.params["winner"] == report["winner"]["label"]
    assert "2026-07-21" in parent.data.tags["split"] and "2026-07-11" in parent.data.tags["validation"]
    printed = capsys.readouterr().out
    assert "The test was not used to choose" in printed


def test_one_progress_line_per_trial_goes_to_stderr(cli_env, capsys):
    argv = ["recommend", "tune", "--interactions", str(cli_env), "--holdout-days", "10", "--k", "5"]
    argv += ["--experiment", "progress"]
    assert main([*argv, "--families", "ease,most_popular", "--max-trials", "3", "--time-budget", "300"]) == 0
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith("[trial")]
    pattern = (
        r"\[trial (\d)/3, \d+ s elapsed, budget 300 s\] (.+): val NDCG@5 (0\.\d{4}) "
        r"\(best so far: (.+) (0\.\d{4})\)"
    )
    matched = [re.fullmatch(pattern, line) for line in lines]
    assert all(matched), lines
    assert [m.group(1) for m in matched] == ["1", "2", "3"]
    assert [m.group(2) for m in matched[:2]] == ["ease lambda=500 (default)", "most_popular (default)"]
    assert matched[2].group(2).startswith("ease lambda=")
    best = max(float(m.group(3)) for m in matched)
    assert float(matched[-1].group(5)) == best
    # then the test, once per configuration it reports, one line each (issue 39: 7 silent minutes)
    tested = [re.fullmatch(r"\[test (\d)/(\d), \d+ s elapsed\] (.+) \((.+)\): refitted on all training, "
                           r"test NDCG@5 (0\.\d{4})", line) for line in err if line.startswith("[test")]  # fmt: skip
    assert all(tested) and [m.group(1) for m in tested] == [str(n) for n in range(1, len(tested) + 1)]
    assert {m.group(2) for m in tested} == {str(len(tested))} and "winner" in tested[0].group(4)
    assert "default most_popular" in " ".join(m.group(4) for m in tested)
    assert err[0].endswith("splits ready; the trials start")


def test_an_explicit_test_file_is_the_test_and_validation_is_carved_from_the_training_file(cli_env, tmp_path):
    shop = _shop()
    train, test = (
        shop[shop["occurred_at"] < T0 + pd.Timedelta(days=50)],
        shop[shop["occurred_at"] >= T0 + pd.Timedelta(days=50)],
    )
    splits = tuning_splits(train, test=test[["customer_key", "product_id"]])
    assert splits.test.split_at is None and len(splits.test.test) == len(test)
    assert splits.validation_days == 21  # the default with an explicit test
    assert splits.validation.split_at == T0 + pd.Timedelta(days=49 - 20)
    assert splits.validation.train["occurred_at"].max() < splits.validation.split_at
    # the same through the CLI
    train.to_parquet(tmp_path / "train.parquet")
    test[["customer_key", "product_id"]].to_csv(tmp_path / "test.csv", index=False)
    argv = [
        "recommend",
        "tune",
        "--interactions",
        str(tmp_path / "train.parquet"),
        "--test",
        str(tmp_path / "test.csv"),
    ]
    out = tmp_path / "tune.json"
    assert main([*argv, "--families", "most_popular", "--experiment", "explicit", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["splits"]["test"] == {
        "split": "explicit",
        "train_interactions": len(train),
        "test_purchases": len(test),
    }
    assert report["splits"]["validation"]["split"] == "time, test from 2026-06-30"


@pytest.mark.parametrize(
    ("validation_days", "message"),
    [
        # the training data (before the 10-day holdout) runs from 2026-06-01 to 2026-07-20
        (
            60,
            "--validation-days 60: the training data runs from 2026-06-01 to 2026-07-20; a validation "
            "carve-out from 2026-05-22 leaves 0 training interactions before it and",
        ),
        (0, "--validation-days must be >= 1, got 0"),
    ],
)
def test_a_carve_out_without_training_rows_is_refused_with_its_dates_and_counts(
    cli_env, capsys, validation_days, message
):
    argv = ["recommend", "tune", "--interactions", str(cli_env), "--holdout-days", "10"]
    assert main([*argv, "--validation-days", str(validation_days)]) == 2
    assert message in capsys.readouterr().err


def test_a_carve_out_without_validation_purchases_names_the_dates_and_counts():
    train = pd.DataFrame(
        {
            "customer_key": ["a", "a", "b"],
            "product_id": ["p", "q", "p"],
            "interaction_type": ["purchase", "purchase", "view"],
            "occurred_at": pd.to_datetime(["2026-01-01", "2026-01-05", "2026-01-30"]),
        }
    )
    with pytest.raises(TuningError) as raised:
        carve_validation(train, validation_days=7)
    assert str(raised.value).startswith(
        "--validation-days 7: the training data runs from 2026-01-01 to 2026-01-30; a validation carve-out "
        "from 2026-01-24 leaves 2 training interactions before it and 0 purchases in it to validate on."
    )


def test_tune_needs_a_test_file_or_holdout_days(cli_env, capsys):
    with pytest.raises(SystemExit):
        main(["recommend", "tune", "--interactions", str(cli_env)])
    assert "one of the arguments --test --holdout-days is required" in capsys.readouterr().err


def test_tune_quiet_prints_no_progress(cli_env, capsys):
    argv = ["recommend", "tune", "--interactions", str(cli_env), "--holdout-days", "10", "--k", "5"]
    assert main([*argv, "--experiment", "quiet", "--families", "most_popular", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "winner: most_popular (default)" in captured.out
