"""The SQL files of the ML stage's reads, and writing an ml.* table."""

from __future__ import annotations

from importlib.resources import files

import duckdb
import pandas as pd
import polars as pl


def sql(name: str) -> str:
    """The text of tessera/mlio/sql/<name>.sql."""
    return files("tessera.mlio").joinpath("sql", f"{name}.sql").read_text()


def checked_columns(frame: pd.DataFrame | pl.DataFrame, expected: list[str], source: str):
    """`frame`, after making sure a SQL file's column list is the one the model code names."""
    if list(frame.columns) != expected:
        raise ValueError(f"{source} reads columns {list(frame.columns)}, the model expects {expected}")
    return frame


def warehouse_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its categorical columns as text: DuckDB would make them ENUMs."""
    return frame.with_columns(pl.col(pl.Categorical, pl.Enum).cast(pl.String))


def write_ml_table(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame | pd.DataFrame, order_by: str) -> str:
    """Replace ml.<name> with a frame, in a stable row order (`order_by`, a column list of the
    code's); the table's name. A pandas frame (from code not yet on polars) is converted here."""
    table = warehouse_columns(pl.from_pandas(frame) if isinstance(frame, pd.DataFrame) else frame).to_arrow()
    con.execute("create schema if not exists ml")
    con.register("frame_df", table)
    try:
        con.execute(f"create or replace table ml.{name} as select * from frame_df order by {order_by}")
    finally:
        con.unregister("frame_df")
    return f"ml.{name}"
