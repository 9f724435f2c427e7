"""Writing a polars frame as a landing file, in the format its suffix names."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def write_landing_file(frame: pl.DataFrame, path: Path) -> int:
    """Write `frame` as CSV, Parquet or JSON Lines (by the suffix of `path`); returns its rows.
    CSV floats are written as numpy prints them (shortest round trip, `1e-05` rather than
    polars' `0.00001`), the text the landing files had when pandas wrote them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        floats = [name for name, dtype in frame.schema.items() if dtype.is_float()]
        frame.with_columns(pl.Series(name, frame[name].to_numpy().astype(str)) for name in floats).write_csv(path)
    elif path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_ndjson(path)
    return frame.height
