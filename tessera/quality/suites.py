"""Run a Great Expectations suite file from expectations/ against a table in DuckDB.

Great Expectations' SQL datasource does not work reliably on DuckDB, so the table (or, above a
row cap, a seeded sample of it, by a hash of each row's content) is pulled into a pandas batch and validated there.
Whole-table invariants that a sample cannot prove also live in dbt tests.

What a suite file holds besides its expectations (`meta`):
- `table`: the table it describes (a caller may validate another, e.g. a publish candidate).
- `references`: foreign keys, each {"as", "column", "table", "key"}. The batch gets a boolean
  column named `as`: true when `column` is NULL or its value is a `key` of `table`, so referential
  integrity is an ordinary expectation on that column. With "key_function" (a SQL macro's name,
  e.g. customer_pkey), the batch's value is compared with key_function(key).

Derived columns the batch always carries (added to a suite's exact column set automatically):
- `_gx_table_rows`: the whole table's row count, so a row-count expectation holds on a sample.

Suite parameters (`{"$PARAMETER": name}` in kwargs), supplied on every validation:
- `min_rows_vs_last_run`, `max_rows_vs_last_run`: the last passing row count ± the allowed change
  (0 and unbounded on a first run);
- `shop_first_day`, `latest_plausible_time`: the range business timestamps must lie in.
- a reference list (REFERENCE_SETS), named as a `value_set`: the codes of the one seed that holds
  them, read at validation time, so no suite repeats a list (currencies: the ISO 4217 seed, and
  the codes fx_rates.csv has a rate for). A failure of such an expectation says which values,
  in which landing files, and which seed decides (`fix` in the failed expectation).

- `validate: "new_files"` with `source`: the batch is the rows of the landing files (by name and
  content hash, from raw.load_audit) this gate has not passed yet with this suite, instead of the
  whole table. For append-only clickstream: each file is validated once, when it arrives, at the
  cost of its own size. A file whose batch fails is not recorded, so it is validated again on
  the next run, even if the loader no longer reads it; an edited suite validates every file again.
  A batch smaller than `TESSERA_GX_MIN_BATCH_ROWS` is made up with a seeded sample of rows
  validated before (`mostly` thresholds are shares: one bad row in a 70-row file is 1.4 %). The
  row-count expectation still sees the whole table (`_gx_table_rows`).

With `docs_dir`, the validation is also rendered as Great Expectations Data Docs HTML there.

No value of a personal column (tessera/privacy/personal.py) is kept from a validation: before a result is
stored, rendered or summarised, `redact` removes the unexpected values (samples, counts, indexes,
rows) and any non-numeric observed value of every expectation on a personal column, and cuts the
samples of the other columns to SAMPLE_CHARS characters each. Data Docs are files no erasure
rewrites, and the summary goes to the Dagster event log.

`quality.gate_history` in the warehouse keeps the row count of every passing validation, so "the
last run" is the last one on this warehouse (a second data directory has its own history).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import duckdb

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx
from great_expectations.core import ExpectationSuite
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

from tessera.privacy.personal import is_personal
from tessera.quality.data_docs import make_offline
from tessera.settings import PROJECT_ROOT

logging.getLogger("great_expectations").setLevel(logging.WARNING)

TABLE_ROWS = "_gx_table_rows"
SCHEMA_EXPECTATION = "expect_table_columns_to_match_set"
# Data Docs keep this many validations per suite; older result files (and their pages) are pruned.
DOCS_KEEP_PER_SUITE = 10
# what a result keeps of unexpected values: this many, cut to this many characters each
SAMPLE_VALUES = 5
SAMPLE_CHARS = 40
WITHHELD = "(withheld: personal column)"
# result entries that hold values of the column (Great Expectations' result_format)
VALUE_ENTRIES = (
    "partial_unexpected_list", "partial_unexpected_counts", "partial_unexpected_index_list", "unexpected_list",
    "unexpected_index_list", "unexpected_rows", "unexpected_index_query", "details",
)  # fmt: skip
# how a missing unexpected value reads in a sample
MISSING = "null"
# the column of a raw table naming each row's landing file: a failed expectation counts its
# unexpected rows per file (entry BY_FILE of its result), at most SAMPLE_FILES files
FILE_COLUMN = "_source_file"
BY_FILE = "unexpected_rows_by_file"
SAMPLE_FILES = 10
# expectations whose observed value is a type name, not a value
TYPE_EXPECTATIONS = ("expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list")


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
    parameters: dict = field(default_factory=dict)
    docs_index: Path | None = None
    docs_page: Path | None = None
    batch: str = "the whole table"
    rows_from_new_files: int | None = None

    def describe(self) -> str:
        if self.evaluated == 0 and self.success:
            return f"nothing to validate: {self.batch}"
        text = f"{self.evaluated - len(self.failed)}/{self.evaluated} expectations passed"
        if self.failed:
            text += "; failed: " + ", ".join(f"{f['expectation']}({f['column']})" for f in self.failed)
            text += "".join(f". {f['fix']}" for f in self.failed if f.get("fix"))
        return text


@dataclass(frozen=True)
class ReferenceSet:
    """A list of accepted values kept in one seed: `column` of `seed`, relative to the project."""

    seed: str
    column: str
    normalise: bool  # upper-case and trim, as the staging models read the seed
    fix: str  # what to do about a value outside it

    def values(self) -> list[str]:
        path = PROJECT_ROOT / self.seed
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if self.column not in (reader.fieldnames or []):
                raise ValueError(f"{self.seed} has no column {self.column!r} (columns: {reader.fieldnames})")
            values = []
            for row_number, row in enumerate(reader, start=1):
                value = (row[self.column] or "").strip().upper() if self.normalise else row[self.column]
                if not value:
                    raise ValueError(f"{self.seed} row {row_number}: column {self.column!r} is empty")
                values.append(value)
        return sorted(set(values))


# Value sets a suite names as {"$PARAMETER": name} instead of listing values.
REFERENCE_SETS = {
    "iso_4217_currencies": ReferenceSet(
        "dbt_project/seeds/currencies.csv",
        "code",
        False,
        "They are not ISO 4217 codes (dbt_project/seeds/currencies.csv): correct the delivered files.",
    ),
    "currencies_with_fx_rate": ReferenceSet(
        "dbt_project/seeds/fx_rates.csv",
        "currency",
        True,
        "They have no rate in dbt_project/seeds/fx_rates.csv: add a row currency,valid_from,rate_to_base.",
    ),
}


def _reference_names(spec: dict) -> dict[tuple[str, str], str]:
    """(expectation type, column) -> the reference set its value_set names, for a suite spec."""
    named = {}
    for e in spec["expectations"]:
        value_set = e["kwargs"].get("value_set")
        if isinstance(value_set, dict) and value_set.get("$PARAMETER") in REFERENCE_SETS:
            named[(e["type"], e["kwargs"].get("column"))] = value_set["$PARAMETER"]
    return named


def reference_parameters(spec: dict) -> dict[str, list[str]]:
    """The values of every reference set the suite names, read from their seeds now."""
    return {name: REFERENCE_SETS[name].values() for name in set(_reference_names(spec).values())}


def _where_unexpected(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    accepted: list[str],
    row_filter: str | None,
    shown: int = 10,
) -> str:
    """ "'EURO' (orders_b.csv: 3 rows), ...": the values of `column` outside `accepted`, most
    frequent first, with the landing files holding each when the table has _source_file."""
    column = _ident(column)
    schema, _, name = table.rpartition(".")
    has_files = con.execute(
        "select count(*) from information_schema.columns where table_schema = ? and table_name = ? "
        "and column_name = '_source_file'",
        [schema or "main", name],
    ).fetchall()[0][0]
    files = "string_agg(distinct _source_file, ', ' order by _source_file)" if has_files else "null"
    rows = con.execute(
        f"select cast({column} as varchar), {files}, count(*) from {table} "
        f"where {column} is not null and cast({column} as varchar) not in (select unnest(?::varchar[])) "
        f"{'and (' + row_filter + ')' if row_filter else ''} group by 1 order by 3 desc, 1",
        [accepted],
    ).fetchall()
    text = ", ".join(
        f"'{_short(value)}' ({where + ': ' if where else ''}{count} row{'s' if count != 1 else ''})"
        for value, where, count in rows[:shown]
    )
    return text + (f" and {len(rows) - shown} more values" if len(rows) > shown else "")


def suite_spec(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def load_suite(path: Path, derived_columns: list[str] | None = None) -> ExpectationSuite:
    """The suite in a file; `derived_columns` join the column set of its schema expectation."""
    spec = suite_spec(path)
    expectations = []
    for e in spec["expectations"]:
        kwargs = dict(e["kwargs"])
        if e["type"] == SCHEMA_EXPECTATION and derived_columns:
            kwargs["column_set"] = list(kwargs["column_set"]) + list(derived_columns)
        expectations.append(ExpectationConfiguration(type=e["type"], kwargs=kwargs, meta=e.get("meta", {})))
    return ExpectationSuite(name=spec["name"], expectations=expectations, meta=spec.get("meta", {}))


HISTORY_TABLE = "quality.gate_history"
FILES_TABLE = "quality.gate_files"


def suite_fingerprint(path: Path) -> str:
    """The suite file's content hash: a file validated with another version of the suite is not
    validated with this one."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def files_to_validate(con: duckdb.DuckDBPyConnection, gate: str, source: str, suite_hash: str) -> list[tuple[str, str]]:
    """Landing files of `source` (name, content hash) this gate has not passed with this suite."""
    loaded = "select _source_file, file_hash from raw.load_audit where source = ?"
    if not _relation_exists(con, FILES_TABLE):
        return sorted(con.execute(loaded, [source]).fetchall())
    return sorted(
        con.execute(
            f"{loaded} except select source_file, file_hash from {FILES_TABLE} where gate = ? and suite_hash = ?",
            [source, gate, suite_hash],
        ).fetchall()
    )


def record_files(
    con: duckdb.DuckDBPyConnection, gate: str, suite_hash: str, files: list[tuple[str, str]], run_id: str
) -> None:
    con.execute("create schema if not exists quality")
    con.execute(
        f"create table if not exists {FILES_TABLE} "
        "(gate varchar, suite_hash varchar, source_file varchar, file_hash varchar, run_id varchar, validated_at timestamp)"
    )
    con.executemany(
        f"insert into {FILES_TABLE} values (?, ?, ?, ?, ?, cast(now() as timestamp))",
        [[gate, suite_hash, name, digest, run_id] for name, digest in files],
    )


def last_passing_rows(con: duckdb.DuckDBPyConnection, gate: str) -> int | None:
    """Row count of the table when this gate last passed on this warehouse, if it ever did."""
    if not con.execute(
        "select count(*) from information_schema.tables where table_schema = 'quality' and table_name = 'gate_history'"
    ).fetchall()[0][0]:
        return None
    rows = con.execute(
        f"select rows_in_table from {HISTORY_TABLE} where gate = ? order by validated_at desc limit 1", [gate]
    ).fetchall()
    return rows[0][0] if rows else None


def record_pass(con: duckdb.DuckDBPyConnection, gate: str, table: str, rows_in_table: int, run_id: str) -> None:
    con.execute("create schema if not exists quality")
    con.execute(
        f"create table if not exists {HISTORY_TABLE} "
        "(gate varchar, table_name varchar, rows_in_table bigint, run_id varchar, validated_at timestamp)"
    )
    con.execute(
        f"insert into {HISTORY_TABLE} values (?, ?, ?, ?, cast(now() as timestamp))",
        [gate, table, rows_in_table, run_id],
    )


def gate_parameters(
    previous_rows: int | None, max_change: float, shop_first_day: str, now: datetime | None = None
) -> dict:
    """Values for the suite parameters, from the last passing row count and the shop's dates."""
    now = now or datetime.now(UTC)
    # Great Expectations refuses a range with neither bound: a first run gets [0, unbounded). So
    # does a table that was empty last time: a change relative to nothing is undefined, and an
    # empty source's first records (a shop's first erasure requests) are no volume anomaly
    first = not previous_rows
    return {
        "min_rows_vs_last_run": 0 if first else int(previous_rows * (1 - max_change)),
        "max_rows_vs_last_run": None if first else int(previous_rows * (1 + max_change)) + 1,
        "shop_first_day": datetime.fromisoformat(shop_first_day),
        # timestamps in the warehouse are UTC without zone
        "latest_plausible_time": (now + timedelta(days=1)).astimezone(UTC).replace(tzinfo=None),
    }


def _seeded_sample(relation: str, rows: int, population: int, seed: int) -> str:
    """SQL: `rows` of the `population` rows of `relation`, those with the smallest seeded hash
    of their content. The choice depends on the rows only, not on the order a parallel scan
    meets them, and takes one parallel pass: a hash filter keeps about 10 % more than `rows`,
    and the smallest hashes among those are kept (DuckDB's reservoir sample runs on one thread:
    docs/scaling.md). Rows with equal
    content share a hash, so they are in or out together. Should the filter keep fewer than
    `rows` (tens of standard deviations away), the sample is that much smaller."""
    population = max(int(population), 1)
    kept = min(population, int(rows) + max(int(rows) // 10, 1000))
    return (
        f"(select * exclude (__sample_hash) from ("
        f"select *, hash(__sample_row, {int(seed)}) as __sample_hash from {relation} as __sample_row"
        f") where __sample_hash % {population} < {kept} order by __sample_hash limit {int(rows)})"
    )


def _batch_sql(
    table: str,
    references: list[dict],
    total: int,
    sample_rows: int | None,
    seed: int,
    row_filter: str | None = None,
    context_rows: int = 0,
    in_batch: int | None = None,
) -> str:
    """The batch's SQL: the rows of `table` (matching `row_filter`: `in_batch` of them), or a seeded
    sample of `sample_rows` of them, plus `context_rows` sampled from the other rows."""
    rows = f"(select * from {table} where {row_filter})" if row_filter else table
    in_batch = total if in_batch is None else in_batch
    base = _seeded_sample(rows, sample_rows, in_batch, seed) if sample_rows else rows
    if row_filter and context_rows > 0:
        # rows validated before, a seeded sample of them: a small batch is judged among them
        context = _seeded_sample(
            f"(select * from {table} where not ({row_filter}))", context_rows, total - in_batch, seed
        )
        base = f"(select * from {base} union all select * from {context})"
    derived = [f"{int(total)} as {TABLE_ROWS}"]
    joins = []
    for i, ref in enumerate(references):
        column, alias = _ident(ref["column"]), _ident(ref["as"])
        # coalesce: `false or NULL` is NULL, and expectations skip NULLs
        derived.append(f"coalesce(t.{column} is null or r{i}.found, false) as {alias}")
        key = _ident(ref["key"])
        if ref.get("key_function"):
            key = f"{_ident(ref['key_function'])}({key})"
        joins.append(
            f"left join (select distinct {key} as k, true as found from {ref['table']}) as r{i} on r{i}.k = t.{column}"
        )
    return f"select t.*, {', '.join(derived)} from {base} as t {' '.join(joins)}"


def _relation_exists(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    schema, _, name = relation.rpartition(".")
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema or "main", name],
        ).fetchall()[0][0]
    )


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a plain column name: {name!r}")
    return name


def _columns_of(kwargs: dict) -> list[str]:
    """The columns an expectation reads, by its kwargs."""
    names = [kwargs.get(k) for k in ("column", "column_A", "column_B")] + list(kwargs.get("column_list") or [])
    return [n for n in names if isinstance(n, str)]


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 1] + "…"


def _is_missing(value) -> bool:
    """None, NaN, NaT or pandas' NA: a missing value, however the batch's frame spelt it."""
    if value is None:
        return True
    try:
        return bool(value != value) or str(value) in ("NaT", "<NA>")  # NaN is the one value unequal to itself
    except (TypeError, ValueError):  # an array-like value: not missing
        return False


def _sample_value(value) -> str:
    """An unexpected value as a sample shows it: a missing one reads "null", never "nan" (issue 39)."""
    return MISSING if _is_missing(value) else _short(value)


def _by_file(result: dict) -> dict[str, int] | None:
    """Unexpected rows per landing file, from Great Expectations' unexpected_index_list (each entry
    names the row's FILE_COLUMN, validate_table), most first; None where the result has no such list."""
    rows = result.get("unexpected_index_list")
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict) or FILE_COLUMN not in rows[0]:
        return None
    counts: dict[str, int] = {}
    for row in rows:
        name = str(row.get(FILE_COLUMN))
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def redact(validation) -> None:
    """Remove from a validation's results, in place, every value of a personal column: the
    unexpected values and the observed value (unless a number or a type name) of an expectation
    on one. Other columns keep SAMPLE_VALUES unexpected values of SAMPLE_CHARS characters."""
    for result in validation.results:
        cfg = result.expectation_config
        r = result.result
        if not r:
            continue
        by_file = _by_file(r)  # file names and counts only: no value of the column
        if by_file is not None:
            r[BY_FILE] = dict(list(by_file.items())[:SAMPLE_FILES])
        if any(is_personal(c) for c in _columns_of(cfg.kwargs)):
            # a missing value is nobody's: a sample of nothing but nulls stays, as "null"
            partial = r.get("partial_unexpected_list")
            for key in VALUE_ENTRIES:
                r.pop(key, None)
            if partial and all(_is_missing(v) for v in partial):
                r["partial_unexpected_list"] = [MISSING] * min(len(partial), SAMPLE_VALUES)
            observed = r.get("observed_value")
            if cfg.type not in TYPE_EXPECTATIONS and not isinstance(observed, (int, float, bool, type(None))):
                r["observed_value"] = WITHHELD
            continue
        for key in ("unexpected_list", "unexpected_index_list", "unexpected_rows", "unexpected_index_query"):
            r.pop(key, None)
        if "partial_unexpected_list" in r:
            r["partial_unexpected_list"] = [_sample_value(v) for v in r["partial_unexpected_list"][:SAMPLE_VALUES]]
        if "partial_unexpected_counts" in r:
            r["partial_unexpected_counts"] = [
                {**c, "value": _sample_value(c["value"])} if "value" in c else c
                for c in r["partial_unexpected_counts"][:SAMPLE_VALUES]
            ]
        if "partial_unexpected_index_list" in r:
            r["partial_unexpected_index_list"] = [
                {k: _sample_value(v) for k, v in i.items()} if isinstance(i, dict) else i
                for i in r["partial_unexpected_index_list"][:SAMPLE_VALUES]
            ]
        if isinstance(r.get("observed_value"), str):
            r["observed_value"] = _short(r["observed_value"])


def _summarise(result) -> dict:
    """A redacted result (`redact`) as the checks' metadata shows it."""
    cfg = result.expectation_config
    r = result.result or {}
    observed = r.get("observed_value")
    if isinstance(observed, list):
        observed = [_short(v) for v in observed]
    elif not isinstance(observed, (int, float, str, bool, type(None))):
        observed = _short(observed)
    return {
        "expectation": cfg.type,
        "column": cfg.kwargs.get("column") or cfg.kwargs.get("column_list"),
        "success": bool(result.success),
        "observed": observed,
        "unexpected_percent": r.get("unexpected_percent"),
        "unexpected_sample": [_sample_value(v) for v in (r.get("partial_unexpected_list") or [])[:SAMPLE_VALUES]],
        "unexpected_count": r.get("unexpected_count"),
        "rows_checked": r.get("element_count"),
        BY_FILE: r.get(BY_FILE),
    }


def validate_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    suite_path: Path,
    max_rows: int,
    seed: int = 42,
    parameters: dict | None = None,
    docs_dir: Path | None = None,
    run_name: str = "tessera",
    row_filter: str | None = None,
    min_batch_rows: int = 0,
) -> SuiteResult:
    """Validate `table` with a suite file. With the SQL `row_filter`, only the matching rows, made
    up to `min_batch_rows` with a seeded sample of the other rows when fewer match: a `mostly`
    threshold is a share, and on a small file one bad row would be a large one."""
    spec = suite_spec(suite_path)
    reference_sets = _reference_names(spec)
    references = spec.get("meta", {}).get("references", [])
    suite = load_suite(suite_path, derived_columns=[TABLE_ROWS] + [r["as"] for r in references])
    total = con.execute(f"select count(*) from {table}").fetchall()[0][0]
    missing = [r for r in references if not _relation_exists(con, r["table"])]
    if missing:
        # integrity cannot be shown against a table that was never built: the gate fails, saying so
        failed = [
            {
                "expectation": "referenced table exists",
                "column": r["column"],
                "success": False,
                "observed": f"{r['table']} does not exist; materialize it first",
                "unexpected_percent": None,
                "unexpected_sample": [],
            }
            for r in missing
        ]
        return SuiteResult(spec["name"], False, 0, total, False, len(failed), failed, failed)
    in_batch = con.execute(f"select count(*) from {table} where {row_filter}").fetchall()[0][0] if row_filter else total
    sampled = in_batch > max_rows
    context_rows = max(0, min(min_batch_rows, max_rows) - in_batch) if row_filter else 0
    df = con.execute(
        _batch_sql(table, references, total, max_rows if sampled else None, seed, row_filter, context_rows, in_batch)
    ).df()
    parameters = parameters if parameters is not None else gate_parameters(None, 0.0, "1900-01-01")
    parameters = {**reference_parameters(spec), **parameters}
    if docs_dir is None:
        validation, index, page = _validate(df, suite, parameters), None, None
    else:
        # what the page's header names as the data asset (without it: "Data asset: None")
        batch = table
        if row_filter:
            batch = f"{table}: the rows of new files, {len(df):,} of {total:,}"
        elif sampled:
            batch = f"{table}: a seeded sample of {len(df):,} of {total:,} rows"
        validation, index, page = _validate_with_docs(df, suite, parameters, Path(docs_dir), run_name, batch)
    results = [_summarise(r) for r in validation.results]
    success = bool(validation.success)
    if len(df) == 0:
        # a batch without rows has no value of TABLE_ROWS: Great Expectations passes its row-count
        # bounds vacuously, so a table that dropped to nothing is judged on its count here
        judged = iter(table_row_bounds(spec, total, parameters))
        results = [next(judged) if _is_row_bound(r) else r for r in results]
        success = all(r["success"] for r in results)
    for r in results:
        # a compound expectation names a list of columns: no reference set is about it
        name = reference_sets.get((r["expectation"], r["column"])) if isinstance(r["column"], str) else None
        if name and not r["success"] and not is_personal(r["column"]):
            where = _where_unexpected(con, table, r["column"], parameters[name], row_filter)
            r["fix"] = f"{r['column']}: {where}. {REFERENCE_SETS[name].fix}"
    return SuiteResult(
        suite=suite.name,
        success=success,
        rows_validated=len(df),
        rows_in_table=total,
        sampled=sampled,
        evaluated=len(results),
        failed=[r for r in results if not r["success"]],
        results=results,
        parameters={
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in parameters.items()
            if k not in REFERENCE_SETS  # the seeds' values: their files say what they were
        },
        docs_index=index,
        docs_page=page,
        rows_from_new_files=in_batch if row_filter else None,
    )


ROW_BOUND_EXPECTATION = "expect_column_values_to_be_between"


def _is_row_bound(result: dict) -> bool:
    return result["expectation"] == ROW_BOUND_EXPECTATION and result["column"] == TABLE_ROWS


def table_row_bounds(spec: dict, total: int, parameters: dict) -> list[dict]:
    """The suite's row-count bounds (its expectations on TABLE_ROWS, in suite order) judged on the
    table's row count `total` itself, as summarised results: what Great Expectations cannot judge
    on a batch without rows."""
    out = []
    for e in spec["expectations"]:
        kwargs = e["kwargs"]
        if e["type"] != ROW_BOUND_EXPECTATION or kwargs.get("column") != TABLE_ROWS:
            continue
        low, high = (
            parameters.get(v["$PARAMETER"]) if isinstance(v, dict) else v
            for v in (kwargs.get("min_value"), kwargs.get("max_value"))
        )
        ok = (low is None or total >= low) and (high is None or total <= high)
        out.append(
            {
                "expectation": ROW_BOUND_EXPECTATION,
                "column": TABLE_ROWS,
                "success": ok,
                "observed": total,
                "unexpected_percent": None if ok else 100.0,
                "unexpected_sample": [] if ok else [str(total)],
            }
        )
    return out


def _batch(context, suite: ExpectationSuite, df):
    return (
        context.data_sources.add_pandas("tessera")
        .add_dataframe_asset(suite.name)
        .add_batch_definition_whole_dataframe("batch")
        .get_batch(batch_parameters={"dataframe": df})
    )


def _result_format(df) -> dict | str:
    """Great Expectations' SUMMARY, and on a batch with a FILE_COLUMN every unexpected row's file
    (COMPLETE with that column as the index): a failure can say which file holds its rows. The
    values it lists are redacted before anything sees them (`redact`)."""
    if FILE_COLUMN not in df.columns:
        return "SUMMARY"
    return {
        "result_format": "COMPLETE",
        "unexpected_index_column_names": [FILE_COLUMN],
        "return_unexpected_index_query": False,
    }


def _validate(df, suite: ExpectationSuite, parameters: dict):
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    validation = _batch(context, suite, df).validate(
        suite, expectation_parameters=parameters, result_format=_result_format(df)
    )
    redact(validation)
    return validation


def _validate_with_docs(
    df, suite: ExpectationSuite, parameters: dict, docs_dir: Path, run_name: str, batch_label: str = ""
):
    """Validate, and render this validation and the suite as Data Docs under docs_dir; the page
    names `batch_label` (the table, and how its rows were chosen) as its data asset.

    The context is ephemeral (no gx/ project); its expectation and validation-result stores are
    files under docs_dir/_gx_state, because Data Docs rebuild the index from them and delete
    pages whose result is gone. Returns (validation, index.html, this validation's page)."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    docs_dir = docs_dir.resolve()

    def files(sub: str) -> dict:
        return {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir / sub)}

    defaults = InMemoryStoreBackendDefaults()
    defaults.stores[defaults.expectations_store_name]["store_backend"] = files("_gx_state/expectations")
    defaults.stores[defaults.validation_results_store_name]["store_backend"] = files("_gx_state/validations")
    config = DataContextConfig(
        store_backend_defaults=defaults,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            "local_site": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": files(""),
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                # by default run names containing "profiling" would leave the validations section
                "site_section_builders": {
                    "validations": {"run_name_filter": {"matches_regex": ".*"}},
                    "profiling": "None",
                },
            }
        },
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.suites.add_or_update(suite)
    batch = _batch(context, suite, df)
    validation = batch.validate(suite, expectation_parameters=parameters, result_format=_result_format(df))
    redact(validation)  # before anything is stored or rendered
    run_id = RunIdentifier(run_name=re.sub(r"[/\\]", "_", run_name))
    validation.meta["run_id"] = run_id
    if batch_label:
        validation.meta.setdefault("batch_spec", {})["data_asset_name"] = batch_label
    suite_id = ExpectationSuiteIdentifier(name=suite.name)
    result_id = ValidationResultIdentifier(
        expectation_suite_identifier=suite_id, run_id=run_id, batch_identifier=batch.id
    )
    _prune_results(docs_dir / "_gx_state" / "validations" / suite.name, keep=DOCS_KEEP_PER_SUITE - 1)
    context.validation_results_store.set(result_id, validation)
    built = time.time()
    context.build_data_docs(site_names=["local_site"], resource_identifiers=[result_id, suite_id])
    make_offline(docs_dir, since=built)  # CDN files and GX's remote logo -> copies inside the site
    url = context.get_docs_sites_urls(resource_identifier=result_id, site_name="local_site")[0]["site_url"]
    index = docs_dir / "index.html"
    if not url or not index.is_file():  # Great Expectations logs rendering errors instead of raising
        raise RuntimeError(f"Data Docs for {suite.name} were not written under {docs_dir}")
    return validation, index, Path(url2pathname(urlparse(url).path))


def _prune_results(suite_dir: Path, keep: int) -> None:
    """Keep the newest `keep` stored results of a suite (their file names end in the UTC run time)."""
    if not suite_dir.is_dir():
        return
    stored = sorted(suite_dir.rglob("*.json"), key=lambda p: p.stat().st_mtime)
    for old in stored[: max(len(stored) - keep, 0)]:
        old.unlink()
