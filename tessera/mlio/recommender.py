"""The recommender's reads (customers known only by customer_pkey: what it trains on and logs to
MLflow carries no internal key) and the write of its lists, back under the internal key."""

from __future__ import annotations

import duckdb
import pandas as pd
import polars as pl

from ml.rec_evaluation import holdout_shortfall, holdout_start
from ml.rec_lists import USER_FEATURES
from ml.recommender import TrainingFrames
from tessera.mlio.tables import checked_columns, sql, write_ml_table
from tessera.privacy import pseudonym

CUSTOMERS_SQL = sql("customers")
ITEMS_SQL = sql("items")
USER_FEATURES_AS_OF_SQL = sql("user_features_as_of")
FEATURES_DATE_SQL = sql("features_date")
INTERACTION_CODES = sql("interaction_codes")
INTERACTIONS_SQL = INTERACTION_CODES + sql("interactions")
INTERNAL_KEYS_SQL = sql("internal_keys")
RULE_VIOLATIONS_SQL = sql("candidate_rule_violations")
# each key column of the interactions and the codes that label it (interaction_codes.sql)
CODED_COLUMNS = (
    ("customer_key", "customer_codes"),
    ("product_id", "product_codes"),
    ("interaction_type", "type_codes"),
)
LABELS_SQL = {column: f"{INTERACTION_CODES} select label from {codes} order by code" for column, codes in CODED_COLUMNS}


def pseudonymised(query: str, order_by: str) -> str:
    """`query` with customer_key replaced by customer_pkey(customer_key) (tessera/privacy/pseudonym.py),
    in a fixed order (`order_by`, a column list of the code's)."""
    return f"select * replace (customer_pkey(customer_key) as customer_key) from ({query}) order by {order_by}"


def labelled(codes: pl.Series, labels: list[str]) -> pl.Series:
    """Integer `codes` (positions in `labels`) as an Enum of `labels`: the codes are kept, no row
    carries its own string."""
    return pl.Series(codes.name, labels, dtype=pl.Enum(labels)).gather(codes)


def read_interactions(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """customer_key (as customer_pkey), product_id, interaction_type and occurred_at of every
    interaction of a customer not asking for erasure, in key order, the three keys Enums whose
    categories are in text order (interaction_codes.sql). Needs pseudonym.install on `con`."""
    frame = con.sql(INTERACTIONS_SQL).pl()
    return frame.with_columns(
        labelled(frame[column], [label for (label,) in con.execute(LABELS_SQL[column]).fetchall()])
        for column, _ in CODED_COLUMNS
    )


def user_features_as_of(con: duckdb.DuckDBPyConnection, as_of) -> pl.DataFrame:
    """Each customer's latest feature snapshot on or before `as_of` (None: the latest), by customer_pkey."""
    frame = con.sql(pseudonymised(USER_FEATURES_AS_OF_SQL, "customer_key"), params={"as_of": as_of}).pl()
    return checked_columns(frame, ["customer_key", *USER_FEATURES], "user_features_as_of.sql")


def read_training_frames(con: duckdb.DuckDBPyConnection, salt: str, test_days: int) -> tuple[TrainingFrames, dict]:
    """What the recommender trains on, and each customer_pkey's internal key. Features as of the
    holdout start (the last `test_days`) only when a model can be evaluated on this data."""
    pseudonym.install(con, salt)
    frames = TrainingFrames(
        customers=con.sql(pseudonymised(CUSTOMERS_SQL, "customer_key")).pl(),
        items=con.sql(ITEMS_SQL).pl(),
        interactions=read_interactions(con),
        features_now=user_features_as_of(con, None),
    )
    internal_keys = dict(con.execute(INTERNAL_KEYS_SQL).fetchall())
    # thin data (no interaction, no purchase in the holdout, nothing before it): no model can be
    # evaluated, so none is trained; the lists come from the champion or popularity
    frames.skip_reason = holdout_shortfall(frames.interactions, test_days)
    if frames.skip_reason is None:
        frames.split_at = holdout_start(frames.interactions["occurred_at"], test_days)
        frames.features_then = user_features_as_of(con, frames.split_at.to_pydatetime())
        frames.features_at = con.execute(FEATURES_DATE_SQL, {"as_of": frames.split_at.to_pydatetime()}).fetchone()[0]
    return frames, internal_keys


def write_candidates(con: duckdb.DuckDBPyConnection, recs: pl.DataFrame | pd.DataFrame, internal_keys: dict) -> str:
    """ml.recommendation_candidates from lists keyed by customer_pkey: back to the internal key
    for the warehouse (the published tables pseudonymise it again). Lists from pandas code are
    converted here."""
    recs = pl.from_pandas(recs) if isinstance(recs, pd.DataFrame) else recs
    recs = recs.with_columns(
        pl.col("customer_key").cast(pl.String).replace_strict(internal_keys, default=None, return_dtype=pl.String)
    )
    if recs["customer_key"].null_count():
        raise ValueError("a recommended customer_pkey maps to no customer in dim_customers")
    return write_ml_table(con, "recommendation_candidates", recs, "customer_key, rank")


def candidate_rule_violations(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many rows of ml.recommendation_candidates break each published rule (0: it holds)."""
    cursor = con.execute(RULE_VIOLATIONS_SQL)
    row = cursor.fetchone()
    return {name: int(value) for (name, *_), value in zip(cursor.description, row, strict=True)}
