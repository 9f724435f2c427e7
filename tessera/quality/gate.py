"""A quality gate's run: a Great Expectations suite on a table, with the row-count bounds of the
gate's last pass, the landing files it has not validated yet, and for a raw source the comparison
of the delivery with the last pass (tessera/quality/delivery.py); a pass is recorded for the next run."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tessera.landing.contract import SOURCES_BY_NAME
from tessera.landing.preflight import check_source
from tessera.quality.delivery import check_delivery, record_delivery
from tessera.quality.suites import (
    BY_FILE,
    TABLE_ROWS,
    SuiteResult,
    files_to_validate,
    gate_parameters,
    last_passing_rows,
    record_files,
    record_pass,
    suite_fingerprint,
    suite_spec,
    table_row_bounds,
    validate_table,
)
from tessera.settings import Settings
from tessera.sql import ident

# the landing files a batch validates, handed to DuckDB as values (the row filter names this table)
BATCH_FILES = "__gate_batch_files"


def run_gate(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    gate: str,
    table: str,
    path: Path,
    run_id: str,
    record: bool = True,
) -> SuiteResult:
    """Validate `table` with the suite file at `path`, row counts judged against the last
    time `gate` passed on this warehouse; with `record`, a pass is recorded for the next run.

    A suite with `meta.validate: "new_files"` validates only the rows of the landing files this
    gate has not passed yet (tessera/quality/suites.py); with none, there is nothing to validate."""
    spec = suite_spec(path)
    meta = spec["meta"]
    files, row_filter, batch = None, None, "the whole table"
    by_file = meta.get("validate") == "new_files"
    suite_hash = suite_fingerprint(path) if by_file else None
    parameters = gate_parameters(
        last_passing_rows(con, gate), settings.gx_max_row_count_change, settings.shop_first_day
    )
    if by_file:
        files = files_to_validate(con, gate, meta["source"], suite_hash)
        if not files:
            total = con.execute(f"select count(*) from {ident(*table.split('.'))}").fetchall()[0][0]
            # no file to validate, but the table's size is still judged: every file gone is a drop
            bounds = table_row_bounds(spec, total, parameters)
            failed = [r for r in bounds if not r["success"]]
            return SuiteResult(
                spec["name"],
                not failed,
                0,
                total,
                False,
                len(failed),
                failed,
                failed,
                parameters={k: v for k, v in parameters.items() if k.endswith("_vs_last_run")},
                batch="every landing file was validated before (same content, same suite)",
                rows_from_new_files=0,
            )
        con.execute(f"create or replace temp table {BATCH_FILES} as select unnest(?::varchar[]) as source_file",
                    [[name for name, _ in files]])  # fmt: skip
        row_filter = f"_source_file in (select source_file from {BATCH_FILES})"
        batch = (
            f"the rows of {len(files)} landing file(s) not validated before, with a sample of validated "
            f"rows up to {settings.gx_min_batch_rows:,} rows"
        )
    result = validate_table(
        con,
        table,
        path,
        settings.gx_max_rows,
        settings.seed,
        parameters=parameters,
        docs_dir=settings.gx_docs_dir,
        run_name=f"{gate}-{run_id[:8]}",
        row_filter=row_filter,
        min_batch_rows=settings.gx_min_batch_rows,
    )
    result.batch = batch
    profiles = None
    schema, _, name = table.partition(".")
    if schema == "raw" and name in SOURCES_BY_NAME:
        delivery, profiles = check_delivery(
            con,
            SOURCES_BY_NAME[name],
            gate,
            settings.gx_max_null_share_increase,
            settings.gx_null_share_min_rows,
            settings.gx_accepted_missing_columns,
        )
        delivery += preflight_results(SOURCES_BY_NAME[name], settings.landing_dir)
        failed = [r for r in delivery if not r["success"]]
        result.results += delivery
        result.failed += failed
        result.evaluated += len(delivery)
        result.success = result.success and not failed
    if result.success and record:
        record_pass(con, gate, table, result.rows_in_table, run_id)
        if files:
            record_files(con, gate, suite_hash, files, run_id)
        if profiles is not None:
            record_delivery(con, gate, SOURCES_BY_NAME[name], profiles, run_id)
    return result


def preflight_results(source, landing_dir: Path) -> list[dict]:
    """The preflight's verdict on the columns of `source`'s landing files (`tessera sources check`,
    tessera/landing/preflight.py), as gate results: a file none of whose columns is a contract
    column fails the gate."""
    with duckdb.connect() as con:
        findings = check_source(con, source, landing_dir, values=False)
    blocking = [f for f in findings if f.fails_gate]
    return [
        {
            "expectation": "landing files fit the contract (tessera sources check)",
            "column": None,
            "success": not blocking,
            "observed": "; ".join(str(f) for f in blocking) or "every file has contract columns",
            "unexpected_percent": None,
            "unexpected_sample": [f.file for f in blocking][:5],
        }
    ]


def _expectation_line(failed: dict) -> str:
    """One failed expectation: what, on which column, how many rows of how many, in which files;
    an expectation about the whole table (row counts, the delivery's columns) says what it saw."""
    column = failed.get("column")
    column = ", ".join(column) if isinstance(column, list) else column
    what = f"{failed['expectation']}" + (f" on {column}" if column and column != TABLE_ROWS else "")
    count, rows = failed.get("unexpected_count"), failed.get("rows_checked")
    if column == TABLE_ROWS:  # the row-count bounds judge the table's size (tessera/quality/suites.py)
        size = (
            failed.get("observed")
            if failed.get("observed") is not None
            else (failed.get("unexpected_sample") or ["?"])[0]
        )
        return f"{what}: the table's {size} rows are out of the bounds its last pass sets"
    if count is None or rows is None:
        return f"{what}: {failed.get('observed')}"
    text = f"{what}: {int(count):,} of {int(rows):,} rows"
    by_file = failed.get(BY_FILE)
    if by_file:
        text += " (" + ", ".join(f"{n:,} in {name}" for name, n in by_file.items()) + ")"
    if failed.get("unexpected_sample"):
        text += f", e.g. {', '.join(failed['unexpected_sample'][:3])}"
    return text


def explain_failure(gate: str, table: str, result: SuiteResult) -> str:
    """What a failed gate says when it stops the run: the gate and its table, every failed
    expectation with the rows that failed it and the landing files they came from, what was
    validated, and where the Data Docs page is. Holds no value of a personal column (the
    samples were redacted before, tessera/quality/suites.py)."""
    lines = [
        f"quality gate {gate} stopped the run: {table} failed {len(result.failed)} of {result.evaluated} "
        f"expectation{'s' if result.evaluated != 1 else ''} (suite {result.suite}.json)"
    ]
    lines += [f"- {_expectation_line(f)}" for f in result.failed]
    validated = f"validated: {result.batch}, {result.rows_validated:,} of {result.rows_in_table:,} rows"
    lines.append(validated + (" (a seeded sample)" if result.sampled else ""))
    lines.append(f"nothing downstream of {table} was run in this run; those tables keep their last good version")
    if result.docs_page is not None:
        lines.append(f"Data Docs: {result.docs_page}")
    return "\n".join(lines)
