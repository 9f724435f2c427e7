"""Feature typing for the recommender's feature tables (ml/rec_features.py) and multi-hot rows in
ml.recommender.feature_space. What broke before: a list of genres ("Action|Comedy", or a Parquet
list column) became one string category, and a title column became a feature per item."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest

from ml.rec_evaluation import prepare_tables, typed_tables
from ml.rec_features import FeatureTypeError, TypingOptions, report_params, type_features
from ml.recommender import feature_space, unseen_user_rows, with_feature_weight, without_identity
from tessera.cli import main

T0 = pd.Timestamp("2026-10-01")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory):
    """One data folder, so one MLflow database (its creation is most of an MLflow test's time)."""
    return tmp_path_factory.mktemp("data")


def _tracking_uri(data_dir) -> str:
    return f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"


def _dense(space) -> dict[str, dict[str, float]]:
    """Each id's non-zero features by name."""
    m = space.matrix.toarray()
    return {i: {space.feature_names[j]: float(m[r, j]) for j in np.flatnonzero(m[r])} for r, i in enumerate(space.ids)}


def _interactions(items: list[str]) -> pd.DataFrame:
    """u0 bought every item, u1 the first, over consecutive days."""
    rows = [("u0", item, "purchase", T0 + pd.Timedelta(days=n)) for n, item in enumerate(items)]
    rows.append(("u1", items[0], "purchase", T0))
    return pd.DataFrame(rows, columns=["customer_key", "product_id", "interaction_type", "occurred_at"])


def test_a_list_column_gives_one_feature_per_value_sharing_the_columns_weight():
    items = pl.DataFrame(
        {
            "product_id": ["m1", "m2", "m3"],
            "genres": [["Action", "Comedy"], ["Comedy"], None],
            "brand": ["x", "y", "x"],
        }
    )
    data = prepare_tables(_interactions(["m1", "m2", "m3"]), item_features=items)
    rows = _dense(data.items)
    # identity 1, genres 1/2 + 1/2, brand 1: a row of 3 before normalisation
    assert rows["m1"] == pytest.approx(
        {"id:m1": 1 / 3, "genres:Action": 1 / 6, "genres:Comedy": 1 / 6, "brand:x": 1 / 3}
    )
    assert rows["m2"] == pytest.approx({"id:m2": 1 / 3, "genres:Comedy": 1 / 3, "brand:y": 1 / 3})
    assert rows["m3"] == pytest.approx({"id:m3": 1 / 3, "genres:unknown": 1 / 3, "brand:x": 1 / 3})
    assert [n for n in data.items.feature_names if n.startswith("genres:")] == [
        "genres:Action",
        "genres:Comedy",
        "genres:unknown",
    ]
    assert np.asarray(data.items.matrix.sum(axis=1)).ravel() == pytest.approx([1.0, 1.0, 1.0])


def test_pipe_separated_text_is_the_same_multi_hot_as_a_list_column():
    ids = ["m1", "m2", "m3", "m4"]
    as_list = pl.DataFrame({"product_id": ids, "genres": [["Action", "Comedy"], ["Comedy"], [], ["Drama"]]})
    # spaces around values and empty values ("Drama|") are cleaned away, a repeated value counts once
    as_text = pd.DataFrame({"product_id": ids, "genres": ["Action | Comedy", "Comedy|Comedy", None, "Drama|"]})
    from_list, choices = typed_tables(_interactions(ids), item_features=as_list)
    from_text, text_choices = typed_tables(_interactions(ids), item_features=as_text)
    assert from_text.items.feature_names == from_list.items.feature_names
    assert (from_text.items.matrix != from_list.items.matrix).nnz == 0
    assert _dense(from_text.items)["m1"]["genres:Action"] == pytest.approx(1 / 4)
    assert report_params(text_choices) == {"feature.items.genres": "list(|): 3 values, up to 2 per row"}
    assert report_params(choices) == {"feature.items.genres": "list: 3 values, up to 2 per row"}


def test_another_delimiter_is_used_only_when_named():
    frame = pl.DataFrame({"product_id": ["a", "b"], "tags": ["red;big", "red"]})
    assert type_features(frame, "product_id", "items").frame["tags"].to_list() == ["red;big", "red"]
    split = type_features(frame, "product_id", "items", TypingOptions(delimiter=";"))
    assert split.frame["tags"].to_list() == [["red", "big"], ["red"]]


def test_numbers_fall_into_quantile_buckets_named_by_their_range():
    prices = pl.DataFrame({"product_id": [f"p{i}" for i in range(10)], "price": [float(i) for i in range(1, 11)]})
    typed = type_features(prices, "product_id", "items")
    assert typed.frame["price"].to_list() == [
        "[1, 3)",
        "[1, 3)",
        "[3, 5)",
        "[3, 5)",
        "[5, 7)",
        "[5, 7)",
        "[7, 9)",
        "[7, 9)",
        "[9, 10]",
        "[9, 10]",
    ]
    assert typed.choices[0].describe() == "numeric: 5 quantile buckets"
    assert typed.choices[0].edges == (1.0, 3.0, 5.0, 7.0, 9.0)


def test_tied_numbers_share_a_bucket_and_missing_ones_stay_unknown():
    values = [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, None]
    frame = pl.DataFrame({"customer_key": [f"c{i}" for i in range(11)], "orders": values})
    typed = type_features(frame, "customer_key", "users", TypingOptions(buckets=4))
    # 6 of 10 values are 0: floor(4 x values-below / 10) puts 0 in bucket 0, 1 in 2, 2..3 in 2..3
    assert typed.frame["orders"].to_list() == ["[0, 1)"] * 6 + ["[1, 3)", "[1, 3)", "[3, 4]", "[3, 4]", None]
    assert typed.choices[0].values == 3
    # and the same table typed again gives the same buckets
    assert type_features(frame, "customer_key", "users", TypingOptions(buckets=4)).frame.equals(typed.frame)


def test_a_number_with_few_values_or_named_categorical_is_one_feature_per_value():
    frame = pl.DataFrame({"customer_key": list("abcdefg"), "kids": [0, 1, 2, 0, 1, 3, None], "code": list(range(7))})
    typed = type_features(frame, "customer_key", "users", TypingOptions(categorical=frozenset({"code"})))
    assert typed.frame["kids"].to_list() == ["0", "1", "2", "0", "1", "3", None]
    assert typed.frame["code"].to_list() == [str(i) for i in range(7)]
    assert [c.describe() for c in typed.choices] == [
        "categorical: 4 values (numeric with at most 5 distinct values)",
        "categorical: 7 values (numeric, named categorical)",
    ]


def test_free_text_is_refused_with_the_file_column_count_and_what_to_do():
    n = 120
    items = pd.DataFrame(
        {
            "product_id": [f"p{i}" for i in range(n)],
            "title": [f"Movie number {i}" for i in range(n)],
            "genre": ["Drama", "Comedy"] * (n // 2),
        }
    )
    with pytest.raises(FeatureTypeError) as refused:
        typed_tables(_interactions(["p0", "p1"]), item_features=items, sources=("users.csv", "data/items.csv"))
    message = str(refused.value)
    assert "data/items.csv: column 'title' has 120 distinct values in 120 rows" in message
    assert "max(50, 50% of rows) = 60" in message
    assert "--drop-feature title" in message
    assert "genre" not in message
    # the same number of values in a much larger table is a category, not free text
    wide = type_features(
        pl.DataFrame({"product_id": [f"p{i}" for i in range(300)], "title": [f"t{i % 120}" for i in range(300)]}),
        "product_id",
        "items",
    )
    assert wide.choices[0].describe() == "categorical: 120 values"


def test_a_dropped_column_is_left_out_and_reported():
    items = pd.DataFrame(
        {"product_id": [f"p{i}" for i in range(120)], "title": [f"t{i}" for i in range(120)], "genre": ["a", "b"] * 60}
    )
    data, choices = typed_tables(
        _interactions(["p0", "p1"]), item_features=items, typing=TypingOptions(drop=frozenset({"title"}))
    )
    assert not [n for n in data.items.feature_names if n.startswith("title:")]
    assert "genre:a" in data.items.feature_names
    assert report_params(choices) == {
        "feature.items.title": "dropped by user",
        "feature.items.genre": "categorical: 2 values",
    }
    with pytest.raises(ValueError, match="no feature table has the column"):
        typed_tables(_interactions(["p0"]), item_features=items, typing=TypingOptions(drop=frozenset({"titel"})))


def test_a_column_of_an_unsupported_type_or_keys_unlike_the_interactions_are_refused():
    dated = pl.DataFrame({"product_id": ["p0"], "released": [pd.Timestamp("2020-01-01").date()]})
    with pytest.raises(FeatureTypeError, match="'released' is of type Date.*--drop-feature released"):
        typed_tables(_interactions(["p0"]), item_features=dated)
    # product ids read as floats in one file and integers in the other match no interaction
    floats = pd.DataFrame({"product_id": [1.0, 2.0], "brand": ["x", "y"]})
    with pytest.raises(
        ValueError, match=r"none of its 2 product_id values is in the interactions \(e.g. \['1.0'\] there, \['1'\]"
    ):
        typed_tables(_interactions(["1", "2"]), item_features=floats)


def test_plain_categorical_columns_give_the_one_hot_matrix_they_always_did():
    frame = pl.DataFrame({"customer_key": ["b", "a", "c"], "band": ["x", None, "x"], "tier": [2, 1, 2]})
    space = feature_space(frame, "customer_key", ["band", "tier"])
    assert space.feature_names == ["id:a", "id:b", "id:c", "band:unknown", "band:x", "tier:1", "tier:2"]
    third = np.float32(1 / 3)
    expected = np.array(
        [
            [third, 0, 0, third, 0, third, 0],
            [0, third, 0, 0, third, 0, third],
            [0, 0, third, 0, third, 0, third],
        ],
        dtype=np.float32,
    )
    assert space.matrix.dtype == np.float32
    np.testing.assert_array_equal(space.matrix.toarray(), expected)


def test_rows_for_unseen_users_split_a_list_columns_weight_as_training_did():
    users = pl.DataFrame(
        {"customer_key": ["u0", "u1", "u2"], "likes": [["a", "b"], ["b"], None], "band": ["x", "y", "x"]}
    )
    data = with_feature_weight(prepare_tables(_interactions(["p0"]), user_features=users), 0.25)
    expected = without_identity(data.users, np.ones(len(data.users.ids), dtype=bool)).toarray()
    got = unseen_user_rows(data.users.feature_names, users, 0.25).toarray()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    names = data.users.feature_names
    assert got[0, names.index("likes:a")] == pytest.approx(0.25 / 1.5 / 2)


def test_the_cli_refuses_free_text_then_drops_it_and_logs_every_choice_to_mlflow(
    tmp_path, data_dir, monkeypatch, capsys
):
    monkeypatch.setenv("TESSERA_DATA_DIR", str(data_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ids = [f"p{i}" for i in range(60)]
    rows = [
        (f"u{u}", ids[(u * 7 + d) % 60], "purchase", T0 + pd.Timedelta(days=d)) for u in range(20) for d in range(6)
    ]
    pd.DataFrame(rows, columns=["customer_key", "product_id", "interaction_type", "occurred_at"]).to_csv(
        tmp_path / "interactions.csv", index=False
    )
    items = pl.DataFrame(
        {
            "product_id": ids,
            "title": [f"Title {i}" for i in range(60)],
            "genres": [["Drama", "Comedy"][: 1 + i % 2] for i in range(60)],
            "price": [float(i % 17) for i in range(60)],
        }
    )
    items.write_parquet(tmp_path / "items.parquet")
    common = ["recommend", "evaluate", "--interactions", str(tmp_path / "interactions.csv")]
    common += ["--item-features", str(tmp_path / "items.parquet"), "--holdout-days", "2"]
    common += ["--k", "3", "--components", "4", "--epochs", "2", "--models", "lightfm_hybrid,most_popular"]
    assert main(common) == 2
    assert "items.parquet: column 'title' has 60 distinct values" in capsys.readouterr().err

    out = tmp_path / "metrics.json"
    assert main([*common, "--drop-feature", "title", "--out", str(out), "--experiment", "features-test"]) == 0
    printed = capsys.readouterr().out
    assert "items.genres: list: 2 values, up to 2 per row" in printed
    assert "items.price: numeric: 5 quantile buckets" in printed
    assert [f["choice"] for f in json.loads(out.read_text())["features"]] == [
        "dropped by user",
        "list: 2 values, up to 2 per row",
        "numeric: 5 quantile buckets",
    ]
    mlflow.set_tracking_uri(_tracking_uri(data_dir))
    (run,) = mlflow.search_runs(experiment_names=["features-test"], output_format="list")
    assert run.data.params["feature.items.title"] == "dropped by user"
    assert run.data.params["feature.items.genres"] == "list: 2 values, up to 2 per row"
    assert run.data.params["feature.items.price"] == "numeric: 5 quantile buckets"
    assert "precision_at_3" in run.data.metrics and "most_popular_ndcg_at_3" in run.data.metrics
    report = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/feature_report.json")
    # prices 0..8 four times each, 9..16 three times: a bucket per 12 of the 60 sorted prices
    assert report["features"][2]["bucket_starts"] == [0.0, 3.0, 6.0, 9.0, 13.0]


def test_a_tuning_search_run_carries_the_feature_typing(data_dir):
    from ml.rec_tuning import tune, tuning_splits
    from ml.recommender import RecommenderParams

    items = pl.DataFrame({"product_id": ["p0", "p1", "p2", "p3"], "genres": [["a", "b"], ["a"], ["c"], ["c"]]})
    # test: u0's purchase of the last day; validation: the day before, carved from training
    splits = tuning_splits(_interactions(["p0", "p1", "p2", "p3"]), holdout_days=1, item_features=items)
    uri = _tracking_uri(data_dir)
    (data_dir / "mlflow").mkdir(exist_ok=True)
    tune(
        splits,
        RecommenderParams(k=2),
        ["most_popular"],
        tracking_uri=uri,
        experiment="tune-features",
        artifact_root=data_dir / "mlflow" / "artifacts",
        search_params=report_params(splits.features),
        search_dicts={"feature_report.json": {"features": [c.as_dict() for c in splits.features]}},
    )
    mlflow.set_tracking_uri(uri)
    runs = {
        r.data.tags["model"]: r for r in mlflow.search_runs(experiment_names=["tune-features"], output_format="list")
    }
    assert runs["tune"].data.params["feature.items.genres"] == "list: 3 values, up to 2 per row"
    report = mlflow.artifacts.load_dict(f"{runs['tune'].info.artifact_uri}/feature_report.json")
    assert report["features"][0]["features"] == 3
