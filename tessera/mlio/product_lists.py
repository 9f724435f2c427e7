"""The lists per product (ml/product_lists.py) from the marts: their baskets and catalogue, the
write of ml.product_recommendations and the count of rows breaking its rules."""

from __future__ import annotations

import duckdb
import polars as pl

from ml.product_lists import (
    BOUGHT_TOGETHER,
    COLUMNS,
    DEFAULT_PARAMS,
    PRODUCT_COLUMNS,
    VIEWED_TOGETHER,
    ListParams,
    co_occurrence,
    similar_items,
)
from tessera.mlio.tables import checked_columns, sql, write_ml_table

TABLE = "product_recommendations"
ORDER_BASKETS_SQL = sql("order_baskets")
VIEW_SESSIONS_SQL = sql("view_sessions")
CATALOGUE_SQL = sql("product_catalogue")
# the products a list may recommend: for sale (active, not priced at zero; product_catalogue.sql)
ACTIVE_PRODUCTS_SQL = "select product_id from marts.dim_products where is_active and coalesce(price_base > 0, true)"
VIOLATIONS_SQL = sql("product_list_violations")


def build_product_lists(con: duckdb.DuckDBPyConnection, params: ListParams = DEFAULT_PARAMS) -> pl.DataFrame:
    """Every list of every product (ml/product_lists.py COLUMNS), from the marts on `con`."""
    catalogue = checked_columns(con.sql(CATALOGUE_SQL).pl(), PRODUCT_COLUMNS, "product_catalogue.sql")
    return pl.concat(
        [
            co_occurrence(con, ORDER_BASKETS_SQL, ACTIVE_PRODUCTS_SQL, BOUGHT_TOGETHER, params),
            co_occurrence(con, VIEW_SESSIONS_SQL, ACTIVE_PRODUCTS_SQL, VIEWED_TOGETHER, params),
            similar_items(catalogue, params),
        ]
    ).select(COLUMNS)


def write_product_lists(con: duckdb.DuckDBPyConnection, lists: pl.DataFrame) -> str:
    """Replace ml.product_recommendations; the table's name."""
    return write_ml_table(
        con, TABLE, checked_columns(lists, COLUMNS, "the product lists"), "product_id, list_name, rank"
    )


def product_list_violations(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many rows (or lists, for the ranks) of ml.product_recommendations break each rule."""
    cursor = con.execute(VIOLATIONS_SQL)
    row = cursor.fetchall()[0]
    return {name: int(value) for (name, *_), value in zip(cursor.description, row, strict=True)}


def list_sizes(lists: pl.DataFrame) -> dict[str, int]:
    """How many products have each list (for the UI)."""
    counts = lists.group_by("list_name").agg(pl.col("product_id").n_unique().alias("products"))
    return {name: int(n) for name, n in counts.sort("list_name").iter_rows()}
