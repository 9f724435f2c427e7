"""Session frames from the datasets the session recommenders are measured on (bench/sessions.py).

Each reader returns one row per (session, item) event with columns session (str), item (str) and
time (int64 epoch microseconds), in the order the events happened (ties: file order), ready for
ml.sessions.sessions_from_events(frame, "session", "item", "time").

- clickstream events in the landing contract's shape (session_id, product_id, event_type,
  event_ts), as the demo generator writes them and the GA4 / RetailRocket mappings produce them
  (tessera/landing/mapping.py); also the shape of the warehouse's fct_events
- Online Retail invoices (a basket is a session; its lines in file order)
- The Complete Journey baskets (basket_id; lines in file order)
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

# events that put a product in front of the visitor; a removal from the cart is not one
ITEM_EVENT_TYPES = ("product_view", "add_to_cart", "purchase")
COLUMNS = ("session", "item", "time")


def _require(frame: pl.DataFrame | pl.LazyFrame, columns: tuple[str, ...], source: str) -> None:
    have = frame.collect_schema().names()
    missing = [c for c in columns if c not in have]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; it has {have}")


def _micros(column: str, schema: pl.Schema | None = None) -> pl.Expr:
    """Epoch microseconds (UTC) of a timestamp column, or of ISO-8601 text when `schema` says text."""
    time = pl.col(column)
    if schema is not None and schema[column] == pl.String:
        time = time.str.to_datetime(time_zone="UTC", time_unit="us")
    return time.dt.cast_time_unit("us").dt.replace_time_zone(None).cast(pl.Int64)


def clickstream_sessions(events: pl.DataFrame, source: str = "events", time_column: str = "event_ts") -> pl.DataFrame:
    """Product events of a clickstream with a session id, anonymous ones included. `time_column`
    holds ISO-8601 text with an offset (landing files) or a timestamp (fct_events' event_at)."""
    _require(events, ("session_id", "product_id", "event_type", time_column), source)
    time = pl.col(time_column)
    if events.schema[time_column] == pl.String:
        time = time.str.to_datetime(time_zone="UTC", time_unit="us")
    frame = events.with_row_index("_row").with_columns(_t=time)
    bad = frame.filter(pl.col("_t").is_null() & pl.col(time_column).is_not_null()).height
    if bad:
        raise ValueError(f"{source}: {bad} value(s) of {time_column} are not timestamps")
    return (
        frame.filter(
            pl.col("event_type").is_in(ITEM_EVENT_TYPES)
            & pl.col("product_id").is_not_null()
            & pl.col("session_id").is_not_null()
            & pl.col("_t").is_not_null()
        )
        .sort("_t", "_row")
        .select(
            pl.col("session_id").cast(pl.String).alias("session"),
            pl.col("product_id").cast(pl.String).alias("item"),
            _micros("_t").alias("time"),
        )
    )


def landing_events(landing_dir: Path) -> pl.DataFrame:
    """Every events file of a landing folder (JSON Lines or Parquet) as one frame."""
    folder = Path(landing_dir) / "events"
    files = sorted(folder.glob("*.jsonl")) + sorted(folder.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no events files (*.jsonl, *.parquet) in {folder}")
    columns = ["session_id", "product_id", "event_type", "event_ts"]
    frames = [
        (pl.read_ndjson(f, infer_schema_length=None) if f.suffix == ".jsonl" else pl.read_parquet(f)).select(
            pl.col(c).cast(pl.String) for c in columns
        )
        for f in files
    ]
    return pl.concat(frames)


def online_retail_sessions(path: Path) -> pl.DataFrame:
    """Invoices as sessions: cancellations (InvoiceNo starting with C) and non-positive
    quantities left out; items in file order within the invoice."""
    frame = pl.read_parquet(path)
    _require(frame, ("InvoiceNo", "StockCode", "InvoiceDate", "Quantity"), str(path))
    return (
        frame.with_row_index("_row")
        .filter(~pl.col("InvoiceNo").cast(pl.String).str.starts_with("C") & (pl.col("Quantity") > 0))
        .sort("InvoiceDate", "_row")
        .select(
            pl.col("InvoiceNo").cast(pl.String).alias("session"),
            pl.col("StockCode").cast(pl.String).str.strip_chars().alias("item"),
            _micros("InvoiceDate").alias("time"),
        )
    )


def complete_journey_sessions(path: Path) -> pl.DataFrame:
    """Baskets as sessions (basket_id, product_id, transaction_timestamp), lines in file order."""
    frame = pl.read_parquet(path)
    _require(frame, ("basket_id", "product_id", "transaction_timestamp"), str(path))
    return (
        frame.with_row_index("_row")
        .sort(_micros("transaction_timestamp", frame.schema), "_row")
        .select(
            # basket ids are whole numbers stored as doubles: as text without the ".0"
            pl.col("basket_id").cast(pl.Int64).cast(pl.String).alias("session"),
            pl.col("product_id").cast(pl.String).alias("item"),
            _micros("transaction_timestamp", frame.schema).alias("time"),
        )
    )
