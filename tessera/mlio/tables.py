"""The SQL files of the ML stage's reads, and writing an ml.* table."""

from __future__ import annotations

from importlib.resources import files

import duckdb
import pandas as pd


def sql(name: str) -> str:
    """The text of tessera/mlio/sql/<name>.sql."""
    return files("tessera.mlio").joinpath("sql", f"{name}.sql").read_text()


def checked_columns(frame: pd.DataFrame, expected: list[str], source: str) -> pd.DataFrame:
    """`frame`, after making sure a SQL file's column list is the one the model code names."""
    if list(frame.columns) != expected:
        raise ValueError(f"{source} reads columns {list(frame.columns)}, the model expects {expected}")
    return frame


def write_ml_table(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame, order_by: str) -> str:
    """Replace ml.<name> with a DataFrame, in a stable row order (`order_by`, a column list of
    the code's); the table's name. Categorical columns are written as text (DuckDB would make
    them ENUMs), and sorted as text."""
    categorical = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    columns = f"* replace ({', '.join(f'cast({c} as varchar) as {c}' for c in categorical)})" if categorical else "*"
    con.execute("create schema if not exists ml")
    con.register("frame_df", frame)
    try:
        con.execute(f"create or replace table ml.{name} as select * from (select {columns} from frame_df) order by {order_by}")
    finally:
        con.unregister("frame_df")
    return f"ml.{name}"
