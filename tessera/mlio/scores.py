"""The reads of the propensity models and the behavioural clusters."""

from __future__ import annotations

import duckdb
import pandas as pd

from ml.clustering import BEHAVIOURAL_FEATURES
from tessera.mlio.tables import checked_columns, sql

FEATURE_SNAPSHOTS_SQL = sql("feature_snapshots")
BEHAVIOURAL_FEATURES_SQL = sql("behavioural_features")


def read_feature_snapshots(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every customer feature snapshot with its propensity labels, in (as_of_date, customer_key) order."""
    return con.execute(FEATURE_SNAPSHOTS_SQL).df()


def read_behavioural_features(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """customer_key and the clustering's features of every customer, in key order."""
    frame = con.execute(BEHAVIOURAL_FEATURES_SQL).df()
    return checked_columns(frame, ["customer_key", *BEHAVIOURAL_FEATURES], "behavioural_features.sql")
