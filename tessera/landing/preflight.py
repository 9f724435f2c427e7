"""`tessera sources check`: the landing files against the contract, in seconds, before a run.

For every source folder it reads each file as the loader will (CSV as text, Parquet, JSON Lines)
and reports, naming the file, the column, the line and the value, and what to do:

- **errors** (the run cannot use the file): a file landing does not read; a file none of whose
  columns is a contract column (an export dropped in unmapped); a required contract column the
  file lacks;
- **warnings** (rows the pipeline will quarantine with a reason, or values it cannot use): a
  required value missing, a timestamp, date, number or boolean that does not parse, a value
  outside the contract's list (event types, product types, order statuses), columns outside the
  contract (not loaded); each with its share of the file, marked when it is above the share the
  raw gates' row-level expectations tolerate.

The graph runs the same check, on the files' columns only (their header or Parquet footer: no scan
of the data), in every raw source's quality gate (tessera/quality/gate.py): a file none of whose
columns is a contract column fails the gate, naming the file, its columns and what to do. Its rows
still load into raw (with their file and row, as every bad row does) and nothing downstream runs.
The other findings are rows the loader and staging quarantine with their reason, judged by the
gate's expectations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from tessera.landing.contract import EVENT_TYPES, PRODUCT_TYPES, SOURCES, Source
from tessera.landing.loader import file_kind, is_compressed, landing_entries
from tessera.sql import ident

# the raw gates' row-level expectations tolerate up to this share of bad rows (expectations/raw_*.json)
GATE_TOLERANCE = 0.01
EXAMPLES = 3
ORDER_STATUSES = ("completed", "cancelled", "returned")
ALLOWED = {
    ("events", "event_type"): EVENT_TYPES,
    ("products", "product_type"): PRODUCT_TYPES,
    ("orders", "status"): ORDER_STATUSES,
    ("email_events", "event_type"): ("sent", "open", "click", "bounce", "unsubscribe"),
    ("privacy", "request_type"): ("consent", "erasure"),
}
NUMBERS = {"price", "unit_price"}
INTEGERS = {"quantity"}
BOOLEANS = {"is_active", "granted"}
DATES = {"birth_date"}


def value_kind(source: str, column: str) -> str:
    if (source, column) in ALLOWED:
        return "one of"
    if column in NUMBERS:
        return "number"
    if column in INTEGERS:
        return "whole number"
    if column in BOOLEANS:
        return "true/false"
    if column in DATES:
        return "date"
    if column.endswith(("_at", "_ts")):
        return "timestamp"
    return "text"


def _parses(kind: str, value: str, allowed: tuple = ()) -> str:
    """SQL: true when the trimmed text `value` (never null here) reads as `kind`."""
    v = f"trim({value})"
    return {
        "number": f"try_cast({v} as double) is not null",
        "whole number": f"try_cast({v} as double) = trunc(try_cast({v} as double))",
        "true/false": f"lower({v}) in ('true', 'false', '1', '0', 't', 'f', 'yes', 'no')",
        "date": f"try_cast({v} as date) is not null",
        "timestamp": f"try_cast({v} as timestamptz) is not null",
        "one of": f"lower({v}) in ({', '.join(repr(a) for a in allowed)})",
    }.get(kind, "true")


@dataclass
class Finding:
    level: str  # error | warning
    source: str
    file: str
    column: str | None
    problem: str
    rows: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)  # (line or row, value)
    position: str = "line"  # CSV and JSON Lines: the line in the file; Parquet: the row
    todo: str = ""
    # an entry of the folder landing does not read: the loader audits it and its policy
    # (TESSERA_LANDING_UNLOADED_FILES) decides whether it blocks
    unread_entry: bool = False
    # the source's raw gate fails on it: a file none of whose columns is a contract column (an
    # export dropped in unmapped), whose every row would load empty
    fails_gate: bool = False

    def __str__(self) -> str:
        where = f"{self.source}/{self.file}" + (f": column {self.column}" if self.column else "")
        shown = "; ".join(f"{self.position} {line}: {value!r}" for line, value in self.examples)
        count = f" ({self.rows:,} rows)" if self.rows else ""
        return (
            f"{self.level.upper()} {where}: {self.problem}{count}"
            + (f" [{shown}]" if shown else "")
            + (f" -> {self.todo}" if self.todo else "")
        )


@dataclass
class CheckReport:
    landing_dir: Path
    findings: list[Finding] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # source -> rows in its files
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    def for_source(self, source: str) -> list[Finding]:
        return [f for f in self.findings if f.source == source]


def _relation(path: Path, kind: str) -> str:
    p = "'" + str(path).replace("'", "''") + "'"
    compression = "gzip" if is_compressed(path) else "none"
    if kind == "csv":
        return f"read_csv({p}, all_varchar = true, header = true, compression = '{compression}', ignore_errors = true)"
    if kind == "parquet":
        return f"read_parquet({p})"
    return f"read_json({p}, format = 'newline_delimited', compression = '{compression}', ignore_errors = true)"


def check_file(
    con: duckdb.DuckDBPyConnection, source: Source, path: Path, values: bool = True
) -> tuple[list[Finding], int]:
    """Findings about one landing file of `source`, and its rows. Without `values`, only what the
    file's header (or Parquet footer) says: its columns (rows is then 0)."""
    kind = file_kind(path)
    name = path.name
    if path.stat().st_size == 0:
        return [], 0  # the loader skips an empty file and reports it
    try:
        relation = _relation(path, kind)
        delivered = [r[0] for r in con.execute(f"describe select * from {relation}").fetchall()]
    except duckdb.Error as exc:
        # the loader reads more than this check does (UTF-16 text, records it quarantines)
        return [
            Finding(
                "warning",
                source.name,
                name,
                None,
                f"the check cannot read it as {kind} ({str(exc).splitlines()[0][:200]}); the load will "
                "decode UTF-16 text and quarantine the records it cannot parse, or stop naming the file",
                todo="if the load stops on it, export the file again",
            )
        ], 0
    by_key = {c.strip().lower(): c for c in delivered}
    present = {c: by_key[c] for c in source.column_names if c in by_key}
    findings = []
    if not present:
        return [
            Finding(
                "error",
                source.name,
                name,
                None,
                f"no column is a contract column of {source.name} (it has: {', '.join(delivered[:12])})",
                todo="map the export onto the landing contract with a source mapping (tessera sources map)",
                fails_gate=True,
            )
        ], 0
    extra = [c for c in delivered if c.strip().lower() not in source.column_names]
    if extra:
        findings.append(
            Finding("warning", source.name, name, None, f"columns outside the contract are not loaded: {extra}")
        )
    for column in source.columns:
        if column.required and column.name not in present:
            findings.append(
                Finding(
                    "error",
                    source.name,
                    name,
                    column.name,
                    "required column missing",
                    todo=f"add {column.name} ({column.description}) in the export or its mapping",
                )
            )
    if not values:
        return findings, 0
    line = "row_number() over () + 1" if kind == "csv" else "row_number() over ()"
    cols = ", ".join(f"cast({ident(delivered_name)} as varchar) as {ident(c)}" for c, delivered_name in present.items())
    con.execute(f"create or replace temp table __check as select {cols}, {line} as _line from {relation}")
    rows = con.execute("select count(*) from __check").fetchone()[0]
    for column in source.columns:
        if column.name not in present:
            continue
        c = ident(column.name)
        tests = []
        if column.required:
            tests.append(
                ("required value missing", f"nullif(trim({c}), '') is null", "fill it in the export or its mapping")
            )
        kind_name = value_kind(source.name, column.name)
        if kind_name != "text":
            allowed = ALLOWED.get((source.name, column.name), ())
            said = f"not one of {', '.join(allowed)}" if allowed else f"does not read as a {kind_name}"
            todo = (
                "map the values onto the contract's with a value map"
                if allowed
                else "declare the column's type and format in the mapping (ISO 8601 for timestamps)"
            )
            tests.append((said, f"nullif(trim({c}), '') is not null and not ({_parses(kind_name, c, allowed)})", todo))
        for problem, condition, todo in tests:
            found = con.execute(
                f"select count(*) over (), _line, {c} from __check where {condition} order by _line limit {EXAMPLES}"
            ).fetchall()
            if not found:
                continue
            bad = found[0][0]
            share = bad / rows if rows else 0
            blocking = f" ({share:.1%} of the file" + (
                f", above the {GATE_TOLERANCE:.0%} the raw gates tolerate in a column)"
                if share > GATE_TOLERANCE
                else ")"
            )
            findings.append(
                Finding(
                    "warning",
                    source.name,
                    name,
                    column.name,
                    problem + blocking,
                    bad,
                    [(int(line_no), value) for _, line_no, value in found],
                    todo=todo,
                    position="row" if kind == "parquet" else "line",
                )
            )
    return findings, rows


def check_landing(landing_dir: Path, sources: tuple[Source, ...] = SOURCES) -> CheckReport:
    """Every landing folder against the contract."""
    started = time.perf_counter()
    report = CheckReport(Path(landing_dir))
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        for source in sources:
            report.findings += check_source(con, source, Path(landing_dir), report)
    finally:
        con.close()
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def check_source(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    landing_dir: Path,
    report: CheckReport | None = None,
    values: bool = True,
) -> list[Finding]:
    """Findings about every entry of `source`'s landing folder (`values`: see check_file)."""
    folder = landing_dir / source.name
    if not folder.is_dir():
        return []
    files, not_loadable = landing_entries(folder)
    findings = [
        Finding(
            "error",
            source.name,
            Path(entry).name,
            None,
            reason,
            todo="remove it or convert it to CSV, Parquet or JSON Lines",
            unread_entry=True,
        )
        for entry, reason in not_loadable.items()
    ]
    total = 0
    for path in files:
        found, rows = check_file(con, source, path, values)
        findings += found
        total += rows
    if report is not None:
        report.rows[source.name] = total
    return findings
