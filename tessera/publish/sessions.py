"""The session index: the recent web sessions' products, published for session-based
recommendations to anonymous visitors (the serving API's POST /v1/sessions/recommendations,
tessera/session_serving.py; the models are ml/sessions.py).

It is built from marts.fct_events, whose rows include the events of visitors who never logged in
(identified_by = 'anonymous'): a session is a session, whoever it belongs to. What is published
holds no session, cookie or customer id, only a session number, the products in first-touch
order and the session's start (for recency). It is published like every other table (written as
a snapshot version into the run's staging directory, released by publish/release), but it is not
one of tessera/publish/published.py's customer tables: it is keyed by session, not customer, and
its asset (orchestration/sessions.py) builds it with its own knobs.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ml.session_evaluation import evaluate, make_cases, make_split
from ml.sessions import Sessions, make_model, sessions_from_events
from tessera.publish.outputs import Published, candidate_table, validation
from tessera.publish.queries import bind, load
from tessera.publish.snapshots import Export

NAME = "session_index"
DEFAULT_LOOKBACK_DAYS = 30
DEFAULT_MAX_SESSIONS = 200_000
# The served model: V-SKNN as tuned on a validation split of Online Retail's training sessions
# (bench/sessions.py, docs/sessions.md: last-item MRR@10 0.133 on its test against item-item's
# 0.073). The literature's defaults (k=100, sample 500, no IDF) are ml/sessions.py's.
SERVED_METHOD = "vsknn"
SERVED_PARAMS = {"k": 1000, "sample_size": 2500, "idf_weight": 1.0}

SESSION_PRODUCTS = Export(
    "session_products",
    "Each product of the index with its name, category and the number of sessions that touched it.",
    load("exports/session_products"),
    "jsonl",
)

SESSION_INDEX = Published(
    NAME,
    "The products of the recent web sessions (anonymous ones included), one row per session and product in "
    "first-touch order: session_number (by start), product_id, position, session_start. No session, cookie or "
    "customer id. The serving API's session recommendations are fitted on it.",
    load(NAME),
    (
        validation(
            "session_positions_are_contiguous",
            "Each session's positions are 1..n and name n distinct products: the order the scorer reads is whole.",
        ),
        validation("session_products_are_active", "Every product is an active product of dim_products."),
    ),
    exports=(SESSION_PRODUCTS,),
    empty_when="no web session touched an active product within the lookback window",
)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def build_candidate(con, lookback_days: int = DEFAULT_LOOKBACK_DAYS, max_sessions: int = DEFAULT_MAX_SESSIONS) -> str:
    """Build publish.session_index__next from the warehouse; returns its name."""
    params = {
        "lookback_days": _positive_int("lookback_days", lookback_days),
        "max_sessions": _positive_int("max_sessions", max_sessions),
    }
    con.execute("create schema if not exists publish")
    candidate = candidate_table(NAME)
    con.execute(f"create or replace table {candidate} as {SESSION_INDEX.sql}", bind(SESSION_INDEX.sql, params))
    return candidate


def sessions_from_index(frame: pl.DataFrame) -> Sessions:
    """The published rows (session_number, product_id, position, session_start) as Sessions."""
    missing = {"session_number", "product_id", "position", "session_start"} - set(frame.columns)
    if missing:
        raise ValueError(f"{NAME}: missing column(s) {sorted(missing)}")
    events = frame.select(
        pl.col("session_number").cast(pl.String).str.zfill(12).alias("session"),
        pl.col("product_id").cast(pl.String).alias("item"),
        # the start orders the sessions, the position the products inside one
        (pl.col("session_start").cast(pl.Datetime("us")).cast(pl.Int64) + pl.col("position")).alias("time"),
    )
    return sessions_from_events(events, "session", "item", "time")


def holdout_quality(con, table: str, test_share: float = 0.1) -> dict[str, float]:
    """Last-item R@10 and MRR@10 of item-item, SKNN (defaults) and the served model on the index's
    own most recent sessions, fitted on the earlier ones: shown beside the asset (an empty dict
    when there are too few sessions to hold any out)."""
    frame = con.sql(f"select session_number, product_id, position, session_start from {table}").pl()
    sessions = sessions_from_index(frame)
    if sessions.n_sessions < 20:
        return {}
    split = make_split(sessions, test_share)
    cases = make_cases(split.test, "last_item")
    if cases.queries.shape[0] == 0:
        return {}
    out: dict[str, float] = {"holdout_cases": float(cases.queries.shape[0])}
    models = {"item_item": make_model("item_item"), "sknn": make_model("sknn")}
    models["served"] = make_model(SERVED_METHOD, **SERVED_PARAMS)
    for label, model in models.items():
        result = evaluate(model.fit(split.train), cases)
        out[f"{label}_recall_at_10"] = result["recall_at_10"]
        out[f"{label}_mrr_at_10"] = result["mrr_at_10"]
    return out
