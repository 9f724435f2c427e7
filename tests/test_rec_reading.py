"""How the recommender asset reads its inputs: interactions as integer codes labelled once (26M
rows of string keys took GBs at 1M customers), point-in-time features in SQL. Both must give
exactly what the plain string path gave."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import polars as pl

from ml.rec_baselines import ItemItemCooccurrence
from ml.rec_evaluation import features_as_of
from ml.rec_lists import USER_FEATURES
from ml.recommender import RecommenderParams, as_pandas, build_data, type_weights, weighted_matrix
from tessera.mlio.recommender import FEATURES_DATE_SQL, USER_FEATURES_AS_OF_SQL, pseudonymised, read_interactions
from tessera.privacy import pseudonym

T0 = pd.Timestamp("2026-10-01")
SALT = "a-test-salt-that-is-long-enough-for-the-check"


def _interactions() -> pd.DataFrame:
    rows = [
        ("c2", "p1", "view", T0),
        ("c1", "p2", "purchase", T0 + pd.Timedelta(hours=1)),
        ("c1", "p2", "cart", T0 + pd.Timedelta(hours=1)),  # the same time: type breaks the tie
        ("c1", "p1", "view", T0 + pd.Timedelta(days=2)),
        ("c3", "p3", "purchase", T0 + pd.Timedelta(days=1)),  # c3 asked for erasure
        ("c9", "p1", "purchase", T0),  # not a customer
        ("c2", None, "view", T0),  # no product
        ("c2", "p3", "wishlist", T0 + pd.Timedelta(days=3)),  # a type without a weight
    ]
    return pd.DataFrame(rows, columns=["customer_key", "product_id", "interaction_type", "occurred_at"])


def test_categorical_keys_build_the_same_data_and_weights_as_strings():
    inter = _interactions()
    users = pd.DataFrame({"customer_key": ["c1", "c2", "c3"]})
    items = pd.DataFrame({"product_id": ["p1", "p2", "p3"]})
    # categories in no particular order, one of them unused
    coded = inter.assign(
        customer_key=pd.Categorical(inter["customer_key"], categories=["c9", "c3", "c1", "c2", "c7"]),
        product_id=pd.Categorical(inter["product_id"], categories=["p3", "p2", "p1"]),
        interaction_type=pd.Categorical(inter["interaction_type"], categories=["wishlist", "view", "purchase", "cart"]),
    )
    plain = build_data(users, items, inter, [], [])
    cat = build_data(users, items, coded, [], [])
    assert len(plain.interactions) == len(cat.interactions) == 6  # c9's row and the product-less row dropped
    np.testing.assert_array_equal(plain.interactions["u"], cat.interactions["u"])
    np.testing.assert_array_equal(plain.interactions["i"], cat.interactions["i"])
    assert plain.interactions["u"].dtype == cat.interactions["u"].dtype == np.int64
    assert cat.interactions["customer_key"].astype(str).tolist() == plain.interactions["customer_key"].tolist()

    params = RecommenderParams()
    weights = params.weight_of()
    assert "wishlist" not in weights
    expected = [weights.get(t, 0.0) for t in inter["interaction_type"]]
    np.testing.assert_array_equal(type_weights(coded["interaction_type"], weights), expected)
    np.testing.assert_array_equal(type_weights(inter["interaction_type"], weights), expected)
    shape = (3, 3)
    reference = T0 + pd.Timedelta(days=5)
    a = weighted_matrix(plain.interactions, shape, params, reference).toarray()
    b = weighted_matrix(cat.interactions, shape, params, reference).toarray()
    np.testing.assert_array_equal(a, b)
    assert a[plain.users.id_map["c1"], plain.items.id_map["p2"]] > 0
    assert a[plain.users.id_map["c2"], plain.items.id_map["p3"]] == 0  # the weightless type adds nothing
    item_item = [ItemItemCooccurrence(d.interactions, 3, 3, weights=weights).user_items.toarray() for d in (plain, cat)]
    np.testing.assert_array_equal(*item_item)


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(
        "create table marts.dim_customers as select * from (values "
        "('c1', false), ('c2', false), ('c3', true), ('c4', false)) t(customer_key, is_erasure_requested)"
    )
    con.register("inter", _interactions())
    con.execute("create table marts.fct_customer_product_interactions as select * from inter")
    feature_values = ", ".join(
        f"'{c}-' || customer_key || '-' || strftime(as_of_date, '%m') as {c}" for c in USER_FEATURES
    )
    con.execute(
        f"create table marts.customer_rec_user_features as select customer_key, as_of_date, {feature_values} from (values "
        "('c1', date '2026-09-01'), ('c1', date '2026-10-01'), ('c1', date '2026-11-01'), "
        "('c2', date '2026-11-01'), ('c3', date '2026-09-01'), ('c4', date '2026-09-15')) t(customer_key, as_of_date)"
    )
    pseudonym.install(con, SALT)
    return con


def test_the_asset_reads_coded_interactions_in_the_order_and_with_the_labels_of_the_string_path():
    con = _warehouse()
    got = read_interactions(con)
    inter = _interactions()
    pkey = {k: pseudonym.pseudonym(SALT, k) for k in ("c1", "c2", "c4")}
    expected = (
        inter[inter["customer_key"].isin(pkey) & inter["product_id"].notna()]
        .assign(customer_key=lambda f: f["customer_key"].map(pkey))
        .sort_values(["customer_key", "product_id", "occurred_at", "interaction_type"])
        .reset_index(drop=True)
    )
    assert len(got) == 5
    for column in ("customer_key", "product_id", "interaction_type"):
        assert isinstance(got.schema[column], pl.Enum)
        assert got[column].cast(pl.String).to_list() == expected[column].tolist(), column
    np.testing.assert_array_equal(got["occurred_at"].to_numpy(), expected["occurred_at"].to_numpy())
    # the erased customer and the non-customer are not even labels
    assert set(got.schema["customer_key"].categories) == set(pkey.values())
    # the model code's pandas frame (as_pandas): categoricals on the same codes, labels in text order
    frame = as_pandas(got)
    for column in ("customer_key", "product_id", "interaction_type"):
        assert isinstance(frame[column].dtype, pd.CategoricalDtype)
        assert frame[column].astype(str).tolist() == expected[column].tolist(), column
        assert frame[column].cat.categories.tolist() == sorted(frame[column].cat.categories), column
    np.testing.assert_array_equal(frame["occurred_at"].to_numpy(), expected["occurred_at"].to_numpy())


def test_point_in_time_features_in_sql_equal_features_as_of():
    con = _warehouse()
    snapshots = con.execute(
        pseudonymised(
            "select * from marts.customer_rec_user_features where customer_key in "
            "(select customer_key from marts.dim_customers where not is_erasure_requested)",
            "customer_key, as_of_date",
        )
    ).df()
    for at in (pd.Timestamp("2026-10-10"), pd.Timestamp("2026-11-01"), None):
        sql = con.execute(
            pseudonymised(USER_FEATURES_AS_OF_SQL, "customer_key"),
            {"as_of": None if at is None else at.to_pydatetime()},
        ).df()
        python = features_as_of(snapshots, "customer_key", at)
        pd.testing.assert_frame_equal(sql, python[sql.columns.tolist()], check_dtype=False)
    then = con.execute(
        pseudonymised(USER_FEATURES_AS_OF_SQL, "customer_key"), {"as_of": pd.Timestamp("2026-10-10").to_pydatetime()}
    ).df()
    # c1 as of October, c4 as of September; c2 did not exist yet; c3 asked for erasure
    assert then["gender"].tolist() == sorted(
        ["gender-c1-10", "gender-c4-09"], key=lambda v: pseudonym.pseudonym(SALT, v.split("-")[1])
    )
    assert (
        con.execute(FEATURES_DATE_SQL, {"as_of": pd.Timestamp("2026-10-10").to_pydatetime()}).fetchone()[0]
        == pd.Timestamp("2026-10-01").date()
    )


def test_categorical_lists_are_written_as_text_in_text_order(tmp_path):
    """recommend() returns its keys as categoricals (codes, not 10M strings); ml tables still get
    VARCHAR columns, sorted by the text, not by the categories' order (DuckDB would otherwise
    make ENUMs and sort by category position)."""
    from ml.rec_lists import constant_column
    from tessera.mlio.tables import write_ml_table

    # categories deliberately not in text order: position order would put "b" first
    keys = pd.Categorical.from_codes(np.array([0, 0, 1, 2, 1]), categories=pd.Index(["b", "a", "c"]))
    frame = pd.DataFrame(
        {
            "customer_key": keys,
            "rank": [2, 1, 1, 1, 2],
            "source": pd.Categorical.from_codes(
                np.array([1, 1, 0, 0, 0], dtype=np.int8), categories=pd.Index(["x", "y"])
            ),
            "model_run_id": constant_column("run-1", 5),
        }
    )
    # the polars frame as the recommender hands it over: keys as Enums in the same category order
    as_polars = pl.DataFrame(
        {
            "customer_key": pl.Series(["b", "b", "a", "c", "a"], dtype=pl.Enum(["b", "a", "c"])),
            "rank": [2, 1, 1, 1, 2],
            "source": pl.Series(["y", "y", "x", "x", "x"], dtype=pl.Enum(["x", "y"])),
            "model_run_id": pl.Series(["run-1"] * 5, dtype=pl.Categorical),
        }
    )
    for name, lists in (("lists", frame), ("polars_lists", as_polars)):
        with duckdb.connect(str(tmp_path / "tessera.duckdb")) as con:
            write_ml_table(con, name, lists, "customer_key, rank")
        with duckdb.connect(str(tmp_path / "tessera.duckdb"), read_only=True) as con:
            types = dict(
                con.execute(
                    "select column_name, data_type from information_schema.columns where table_name = ?", [name]
                ).fetchall()
            )
            rows = con.execute(f"select * from ml.{name}").fetchall()  # physical order
        assert types == {"customer_key": "VARCHAR", "rank": "BIGINT", "source": "VARCHAR", "model_run_id": "VARCHAR"}
        assert rows == [
            ("a", 1, "x", "run-1"),
            ("a", 2, "x", "run-1"),
            ("b", 1, "y", "run-1"),
            ("b", 2, "y", "run-1"),
            ("c", 1, "x", "run-1"),
        ]
