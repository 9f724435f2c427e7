"""Run a Great Expectations suite file from expectations/ against a table in DuckDB.

Great Expectations' SQL datasource does not work reliably on DuckDB, so the table (or, above a
row cap, a seeded reservoir sample of it) is pulled into a pandas batch and validated there.
Whole-table invariants that a sample cannot prove also live in dbt tests.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402  (analytics must be off before import)
from great_expectations.core import ExpectationSuite  # noqa: E402
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration  # noqa: E402

logging.getLogger("great_expectations").setLevel(logging.WARNING)


@dataclass
class SuiteResult:
    suite: str
    success: bool
    rows_validated: int
    rows_in_table: int
    sampled: bool
    evaluated: int
    failed: list[dict] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)


def load_suite(path: Path) -> ExpectationSuite:
    spec = json.loads(Path(path).read_text())
    return ExpectationSuite(
        name=spec["name"],
        expectations=[ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"]) for e in spec["expectations"]],
        meta=spec.get("meta", {}),
    )


def _summarise(result) -> dict:
    cfg = result.expectation_config
    r = result.result or {}
    return {
        "expectation": cfg.type,
        "column": cfg.kwargs.get("column"),
        "success": bool(result.success),
        "observed": r.get("observed_value"),
        "unexpected_percent": r.get("unexpected_percent"),
        "unexpected_sample": [str(v) for v in (r.get("partial_unexpected_list") or [])[:5]],
    }


def validate_table(
    con: duckdb.DuckDBPyConnection, table: str, suite_path: Path, max_rows: int, seed: int = 42
) -> SuiteResult:
    suite = load_suite(suite_path)
    total = con.execute(f"select count(*) from {table}").fetchone()[0]
    sampled = total > max_rows
    if sampled:
        df = con.execute(
            f"select * from {table} using sample reservoir({int(max_rows)} rows) repeatable ({int(seed)})"
        ).df()
    else:
        df = con.execute(f"select * from {table}").df()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    datasource = context.data_sources.add_pandas("tessera")
    batch = (
        datasource.add_dataframe_asset(suite.name)
        .add_batch_definition_whole_dataframe("batch")
        .get_batch(batch_parameters={"dataframe": df})
    )
    validation = batch.validate(suite)
    results = [_summarise(r) for r in validation.results]
    return SuiteResult(
        suite=suite.name,
        success=bool(validation.success),
        rows_validated=len(df),
        rows_in_table=total,
        sampled=sampled,
        evaluated=len(results),
        failed=[r for r in results if not r["success"]],
        results=results,
    )
