"""Lists per product (ml/product_lists.py, tessera/mlio/product_lists.py): exact lists on tiny
baskets and catalogues, the marts' baskets and sessions, and the rules' violation counts."""

from __future__ import annotations

import math
import re
import shutil
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest

from ml.product_lists import (
    BOUGHT_TOGETHER,
    COLUMNS,
    DEFAULT_PARAMS,
    SIMILAR,
    VIEWED_TOGETHER,
    ListParams,
    co_occurrence,
    co_occurrence_sql,
    similar_items,
)
from tessera.mlio.product_lists import build_product_lists, product_list_violations, write_product_lists


def lists_of(
    con, baskets: dict[str, list[str]], targets: list[str], params: ListParams = DEFAULT_PARAMS, score="cosine"
):
    rows = [(b, p) for b, products in baskets.items() for p in products]
    con.register("b", pl.DataFrame(rows, schema=["basket_id", "product_id"], orient="row").to_arrow())
    con.register("t", pl.DataFrame({"product_id": targets}).to_arrow())
    frame = co_occurrence(con, "select * from b", "select * from t", BOUGHT_TOGETHER, params, score)
    return [
        (r["product_id"], r["rank"], r["recommended_product_id"], round(r["score"], 6), r["support"])
        for r in frame.iter_rows(named=True)
    ]


@pytest.fixture
def con():
    con = duckdb.connect()
    yield con
    con.close()


def test_bought_together_scores_pairs_by_cosine_and_drops_pairs_seen_in_one_basket(con):
    # A is in 3 baskets, B and C in 2, D in 1; A-B and A-C share 2 baskets, B-C and A-D, C-D one
    baskets = {"o1": ["A", "B", "C"], "o2": ["A", "B"], "o3": ["A", "C", "D"]}
    cosine = round(2 / math.sqrt(3 * 2), 6)
    assert lists_of(con, baskets, ["A", "B", "C", "D"]) == [
        ("A", 1, "B", cosine, 2),
        ("A", 2, "C", cosine, 2),
        ("B", 1, "A", cosine, 2),
        ("C", 1, "A", cosine, 2),
    ]


def test_a_minimum_support_of_one_keeps_every_pair_and_ties_fall_to_support_then_id(con):
    baskets = {"o1": ["A", "B", "C"], "o2": ["A", "B"], "o3": ["A", "C", "D"]}
    got = lists_of(con, baskets, ["A", "B", "C", "D"], ListParams(min_support=1))
    a = [(rank, other, score) for p, rank, other, score, _ in got if p == "A"]
    # A-D: 1 / sqrt(3 * 1) = 0.577 ranks below A-B and A-C (0.816), which tie and go by id
    assert a == [(1, "B", 0.816497), (2, "C", 0.816497), (3, "D", 0.57735)]
    assert ("B", 2, "C", 0.5, 1) in got


def test_the_raw_count_puts_the_bestseller_first_where_the_cosine_does_not(con):
    # A is in 5 baskets, X (a bestseller) in 9, Y in 2; A-X share 4 baskets, A-Y 2
    baskets = (
        {f"o{i}": ["X", "A"] for i in range(3)}
        | {"o3": ["X", "Y", "A"], "o4": ["Y", "A"]}
        | {f"x{i}": ["X"] for i in range(5)}
    )
    products = ["A", "X", "Y"]
    by_count = [other for p, _, other, _, _ in lists_of(con, baskets, products, score="count") if p == "A"]
    by_cosine = [other for p, _, other, _, _ in lists_of(con, baskets, products) if p == "A"]
    assert by_count == ["X", "Y"]
    # cosine: A-Y 2 / sqrt(5 * 2) = 0.632 against A-X 4 / sqrt(5 * 9) = 0.596
    assert by_cosine == ["Y", "X"]


def test_a_product_never_recommends_itself_nor_a_product_outside_the_targets(con):
    # the same product twice in one basket is one item; E is not a target (inactive)
    baskets = {"o1": ["A", "A", "B", "E"], "o2": ["A", "B", "E"]}
    got = lists_of(con, baskets, ["A", "B"])
    assert [(p, other) for p, _, other, _, _ in got] == [("A", "B"), ("B", "A"), ("E", "A"), ("E", "B")]
    assert all(score == 1.0 for *_, score, _ in got)


def test_a_basket_over_the_size_cap_makes_no_pair_but_counts_for_its_products(con):
    baskets = {"o1": ["A", "B"], "o2": ["A", "B"], "big1": ["A", "B", "C"], "big2": ["A", "B", "C"]}
    got = lists_of(con, baskets, ["A", "B", "C"], ListParams(max_basket_items=2))
    # only o1 and o2 pair A with B; A and B are in 4 baskets each: 2 / sqrt(4 * 4)
    assert got == [("A", 1, "B", 0.5, 2), ("B", 1, "A", 0.5, 2)]


def test_lists_stop_at_top_n(con):
    baskets = {f"o{i}": ["A", "B", "C", "D"] for i in range(2)}
    got = lists_of(con, baskets, ["A", "B", "C", "D"], ListParams(top_n=2))
    assert [(p, rank, other) for p, rank, other, _, _ in got if p == "A"] == [("A", 1, "B"), ("A", 2, "C")]
    assert len(got) == 8


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ListParams(top_n=0), "top_n must be at least 1"),
        (lambda: ListParams(min_support=0), "min_support must be at least 1"),
        (lambda: ListParams(brand_weight=-1), "brand_weight must not be negative"),
        (lambda: co_occurrence(duckdb.connect(), "b", "t", BOUGHT_TOGETHER, score="jaccard"), "one of"),
    ],
)
def test_bad_parameters_are_refused_with_their_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


CATALOGUE = pl.DataFrame(
    {
        "product_id": ["1", "2", "3", "4", "5", "6"],
        "product_name": ["Red Mug", "Blue Mug", "Red Plate", "Mug Tree", "Red Mug", "Red mug"],
        "category": ["kitchen", "kitchen", "kitchen", "garden", None, None],
        "brand": ["X", "Y", "X", None, None, None],
        "price_band": ["mid", "mid", "budget", "mid", "unknown", "unknown"],
        "is_active": [True, True, True, True, False, True],
    }
)


def test_similar_items_are_the_cosine_of_name_tfidf_brand_and_price_band_within_a_category():
    got = [
        (r["product_id"], r["rank"], r["recommended_product_id"], round(r["score"], 4), r["support"])
        for r in similar_items(CATALOGUE).iter_rows(named=True)
    ]
    # kitchen (3 products): idf(red) = idf(mug) = ln(4 / 3) + 1, idf(blue) = idf(plate) = ln(4 / 2) + 1.
    # 1-2 share "mug" and the mid band: (0.7071 * 0.6054 + 0.25) / (1 + 0.5 + 0.25) = 0.3875;
    # 1-3 share "red" and brand X: (0.7071 * 0.6054 + 0.5) / 1.75 = 0.5303; 2-3 share nothing.
    # 4 is alone in garden; 5 and 6 (no category) are compared with each other, 5 is inactive.
    assert got == [
        ("1", 1, "3", 0.5303, 1),
        ("1", 2, "2", 0.3875, 1),
        ("2", 1, "1", 0.3875, 1),
        ("3", 1, "1", 0.5303, 1),
        ("5", 1, "6", 1.0, 2),
    ]


def test_similar_items_scored_a_few_products_at_a_time_are_the_same(monkeypatch):
    import ml.product_lists

    whole = similar_items(CATALOGUE)
    monkeypatch.setattr(ml.product_lists, "SIMILAR_BLOCK_ROWS", 2)
    assert similar_items(CATALOGUE).equals(whole)


def test_similar_items_refuse_a_catalogue_with_a_duplicate_or_missing_column():
    with pytest.raises(ValueError, match="not unique"):
        similar_items(pl.concat([CATALOGUE, CATALOGUE.head(1)]))
    with pytest.raises(ValueError, match=r"lacks columns \['brand'\]"):
        similar_items(CATALOGUE.drop("brand"))


def marts(con, order_items: list[tuple], events: list[tuple]) -> None:
    """A tiny marts schema: four merchandise products (D inactive) and a postage line, customers
    c1 and c2 (c2 asked for erasure)."""
    con.execute("create schema marts")
    con.execute(
        "create table marts.dim_products as select * from (values "
        "('A', 'Red Mug', 'kitchen', 'X', 'mid', 'merchandise', true, 6.5), "
        "('B', 'Blue Mug', 'kitchen', 'Y', 'mid', 'merchandise', true, 6.0), "
        "('C', 'Red Plate', 'kitchen', 'X', 'budget', 'merchandise', true, 2.5), "
        "('D', 'Old Mug', 'kitchen', 'Y', 'mid', 'merchandise', false, 6.0), "
        "('POST', 'Postage', null, null, 'budget', 'shipping', false, 3.0)"
        ") as t(product_id, product_name, category, brand, price_band, product_type, is_active, price_base)"
    )
    con.execute(
        "create table marts.dim_customers as select * from (values ('c1', false), ('c2', true)) as t(customer_key, is_erasure_requested)"
    )
    con.execute(
        "create table marts.fct_order_items (order_id varchar, customer_key varchar, product_id varchar, line_type varchar, status varchar)"
    )
    if order_items:
        con.executemany("insert into marts.fct_order_items values (?, ?, ?, ?, ?)", order_items)
    con.execute(
        "create table marts.fct_events (session_id varchar, anonymous_id varchar, customer_key varchar, "
        "product_id varchar, event_type varchar, event_at timestamp)"
    )
    if events:
        con.executemany("insert into marts.fct_events values (?, ?, ?, ?, ?, ?)", events)


def at(minute: int) -> datetime:
    return datetime(2026, 1, 1, 10, 0) + timedelta(minutes=minute)


def test_bought_together_takes_completed_sale_lines_of_merchandise_and_leaves_out_erased_customers(con):
    sale = ("sale", "completed")
    marts(
        con,
        [
            ("o1", "c1", "A", *sale),
            ("o1", "c1", "B", *sale),
            ("o1", "c1", "POST", "non_sale", "completed"),
            ("o2", None, "A", *sale),
            ("o2", None, "B", *sale),  # a store receipt without a customer counts
            ("o3", "c1", "A", "return", "completed"),
            ("o3", "c1", "C", *sale),
            ("o4", "c1", "A", *sale),
            ("o4", "c1", "C", "sale", "cancelled"),
            ("o5", "c2", "A", *sale),
            ("o5", "c2", "C", *sale),  # erased
            ("o6", "c2", "A", *sale),
            ("o6", "c2", "C", *sale),  # erased
        ],
        [],
    )
    lists = build_product_lists(con).filter(pl.col("list_name") == BOUGHT_TOGETHER)
    # A is in o1, o2, o4 (3 baskets), B in o1, o2: A-B 2 / sqrt(3 * 2); A-C never reaches 2 baskets
    assert lists.select("product_id", "recommended_product_id", "support").rows() == [("A", "B", 2), ("B", "A", 2)]
    assert lists["score"].round(6).to_list() == [round(2 / math.sqrt(6), 6)] * 2


def test_viewed_together_uses_the_session_id_else_a_30_minute_gap_per_browser(con):
    view = "product_view"
    marts(
        con,
        [],
        [
            # two sessions with ids, each viewing A and B (and D, inactive: never recommended)
            ("s1", "u1", None, "A", view, at(0)),
            ("s1", "u1", None, "B", view, at(1)),
            ("s1", "u1", None, "D", view, at(2)),
            ("s2", "u2", "c1", "A", view, at(0)),
            ("s2", "u2", "c1", "B", view, at(5)),
            ("s2", "u2", "c1", "D", view, at(6)),
            # no session id: u3 views A, then C 29 minutes later (one session), then B 31 minutes after that
            (None, "u3", None, "A", view, at(0)),
            (None, "u3", None, "C", view, at(29)),
            (None, "u3", None, "B", view, at(60)),
            # u4: A and C 10 minutes apart, one session
            (None, "u4", None, "A", view, at(0)),
            (None, "u4", None, "C", view, at(10)),
            # not views, or an erased customer's: ignored
            ("s3", "u5", None, "A", "add_to_cart", at(0)),
            ("s3", "u5", None, "C", "add_to_cart", at(1)),
            ("s4", "u6", "c2", "B", view, at(0)),
            ("s4", "u6", "c2", "C", view, at(1)),
            ("s5", "u6", "c2", "B", view, at(0)),
            ("s5", "u6", "c2", "C", view, at(1)),
        ],
    )
    lists = build_product_lists(con).filter(pl.col("list_name") == VIEWED_TOGETHER)
    # A: in s1, s2, u3's first and u4's session (4); B: s1, s2, u3's second (3); C: u3's first, u4's (2); D: 2
    assert lists.select("product_id", "rank", "recommended_product_id", "support").rows() == [
        ("A", 1, "C", 2),  # 2 / sqrt(4 * 2) = 0.707
        ("A", 2, "B", 2),  # 2 / sqrt(4 * 3) = 0.577
        ("B", 1, "A", 2),
        ("C", 1, "A", 2),
        ("D", 1, "B", 2),  # 2 / sqrt(2 * 3) = 0.816
        ("D", 2, "A", 2),  # 2 / sqrt(2 * 4) = 0.707
    ]


def test_the_published_table_holds_every_list_and_the_checks_count_nothing_on_it(con):
    sale = ("sale", "completed")
    marts(con, [(f"o{i}", "c1", p, *sale) for i in range(2) for p in ("A", "C")], [])
    lists = build_product_lists(con)
    assert lists.columns == COLUMNS
    assert set(lists["list_name"]) == {BOUGHT_TOGETHER, SIMILAR}
    write_product_lists(con, lists)
    assert product_list_violations(con) == {
        "self_recommendations": 0,
        "inactive_recommendations": 0,
        "unknown_recommended_products": 0,
        "lists_with_gaps_in_ranks": 0,
    }


@pytest.mark.parametrize(
    ("bad_row", "broken"),
    [
        (("A", "similar", 2, "A", 0.5, 1), "self_recommendations"),
        (("A", "similar", 2, "D", 0.5, 1), "inactive_recommendations"),
        (("A", "similar", 2, "ZZZ", 0.5, 1), "unknown_recommended_products"),
        (("A", "similar", 3, "B", 0.5, 1), "lists_with_gaps_in_ranks"),
        (("A", "similar", 1, "B", 0.5, 1), "lists_with_gaps_in_ranks"),  # rank 1 twice
    ],
)
def test_each_check_counts_the_row_that_breaks_it(con, bad_row, broken):
    marts(con, [], [])
    good = pl.DataFrame([("A", "similar", 1, "C", 0.9, 1)], schema=COLUMNS, orient="row")
    write_product_lists(con, pl.concat([good, pl.DataFrame([bad_row], schema=good.schema, orient="row")]))
    violations = product_list_violations(con)
    assert violations[broken] == 1
    assert sum(violations.values()) == 1


@pytest.mark.spark
def test_the_co_occurrence_sql_gives_duckdbs_lists_on_spark(con):
    # the SQL is portable but for its parameter markers: $name on DuckDB, :name on Spark
    # (tessera/identity/dialects.py param); about 20 s of Spark start, out of the fast tier
    pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install -e '.[spark]')")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime on PATH: PySpark needs Java 17 or newer")
    from pyspark.sql import SparkSession

    rng = np.random.default_rng(7)
    baskets = pl.DataFrame(
        {
            "basket_id": [f"o{i}" for i in rng.integers(0, 40, 300)],
            "product_id": [f"p{i}" for i in rng.integers(0, 15, 300)],
        }
    )
    targets = pl.DataFrame({"product_id": [f"p{i}" for i in range(12)]})  # p12-p14 inactive
    con.register("b", baskets.to_arrow())
    con.register("t", targets.to_arrow())
    params = ListParams(top_n=5, max_basket_items=9)
    expected = co_occurrence(con, "select * from b", "select * from t", BOUGHT_TOGETHER, params)
    assert expected.height > 20

    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        spark.createDataFrame(baskets.to_pandas()).createOrReplaceTempView("b")
        spark.createDataFrame(targets.to_pandas()).createOrReplaceTempView("t")
        sql = re.sub(r"\$([a-z_]+)", r":\1", co_occurrence_sql("select * from b", "select * from t"))
        bound = {"min_support": params.min_support, "max_basket_items": params.max_basket_items, "top_n": params.top_n}
        rows = spark.sql(sql, args=bound).collect()
    finally:
        spark.stop()
    got = pl.DataFrame([r.asDict() for r in rows]).sort("product_id", "rank")
    assert (
        got.select("product_id", "rank", "recommended_product_id", "support").rows()
        == expected.select("product_id", "rank", "recommended_product_id", "support").rows()
    )
    assert got["score"].to_list() == pytest.approx(expected["score"].to_list(), rel=1e-12)


def test_co_occurrence_leaves_no_table_of_baskets_behind(con):
    # the baskets are copied to a temporary table for the query (memory, see co_occurrence) and
    # dropped after it, also when the query fails
    first = lists_of(con, {"o1": ["a", "b"], "o2": ["a", "b"]}, ["a", "b"])
    assert first == [("a", 1, "b", 1.0, 2), ("b", 1, "a", 1.0, 2)]
    tables = "select count(*) from duckdb_tables() where table_name = 'co_occurrence_baskets'"
    assert con.execute(tables).fetchone() == (0,)
    with pytest.raises(duckdb.Error):
        co_occurrence(con, "select * from b", "select no_such_column from t", BOUGHT_TOGETHER)
    assert con.execute(tables).fetchone() == (0,)
