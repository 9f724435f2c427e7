"""The reads of the propensity models and the behavioural clusters."""

from __future__ import annotations

import duckdb
import polars as pl

from ml.clustering import BEHAVIOURAL_FEATURES
from tessera.mlio.tables import checked_columns, sql

FEATURE_SNAPSHOTS_SQL = sql("feature_snapshots")
BEHAVIOURAL_FEATURES_SQL = sql("behavioural_features")


def read_feature_snapshots(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every customer feature snapshot with its propensity labels, in (as_of_date, customer_key) order."""
    return con.sql(FEATURE_SNAPSHOTS_SQL).pl()


def read_behavioural_features(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """customer_key and the clustering's features of every customer, in key order."""
    frame = con.sql(BEHAVIOURAL_FEATURES_SQL).pl()
    return checked_columns(frame, ["customer_key", *BEHAVIOURAL_FEATURES], "behavioural_features.sql")
