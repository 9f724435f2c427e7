"""Run a source mapping (tessera/landing/mapping_schema.py): an export in, landing files out, all
of it SQL in DuckDB.

1. Each input's files are read (CSV as text, Parquet and JSON Lines with their own types) into a
   table with the lineage columns ``_file`` (the file's name) and ``_row`` (the record's position
   in its file, from 1), and each declared column is typed as declared. A value that does not
   parse under its declared type and format is kept as delivered beside the typed one: an output
   column that only renames it writes the delivered text, so staging flags it with its reason
   (nothing is lost), and the report counts it with its file, row and value.
2. Steps and outputs become views, in file order. Classification rules are evaluated on the rows
   an output reads; a matching row is left out and recorded with the rule and its reason.
3. Every output is written as the contract's columns, as text: timestamps as ISO 8601 in UTC,
   dates as ISO dates, numbers as DuckDB prints them; a contract column the mapping does not fill
   is written empty, and `currency` from the input's or the output's declared currency.
4. The landing folder is replaced whole only once every file is written (a new folder beside it,
   swapped in by rename). Beside the sources, ``_mapping/`` keeps the report (``report.json``),
   the classified rows (``classified.parquet``) and the values that did not parse
   (``unparsed.parquet``): the loader does not read it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from tessera.landing.contract import SOURCES_BY_NAME
from tessera.landing.mapping_schema import (
    Constant,
    Input,
    InputColumn,
    Mapping,
    MappingError,
    Node,
    ValueMap,
    load_mapping,
    mapping_path,
)
from tessera.sql import ident

REPORT_DIR = "_mapping"
SUFFIX_FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".gz": None}
EXAMPLES = 5
RAW = "__raw"  # suffix of the as-delivered text kept beside a typed column
DELIVERED = "__delivered"  # suffix of a value-mapped column's value before the map


@dataclass
class MappingReport:
    mapping: str
    inputs: dict[str, dict] = field(default_factory=dict)  # name -> files, records
    outputs: dict[str, dict] = field(default_factory=dict)  # name -> rows
    classified: dict[str, dict] = field(default_factory=dict)  # step or output -> rule -> rows left out
    unparsed: dict[str, dict] = field(default_factory=dict)  # input.column -> count, examples
    unmapped: dict[str, dict] = field(default_factory=dict)  # output.column -> value -> count
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        """What a person should look at before running: values that did not parse, values a
        value map does not know."""
        said = []
        for where, found in self.unparsed.items():
            examples = "; ".join(f"{e['file']} row {e['row']}: {e['value']!r}" for e in found["examples"])
            said.append(f"{where}: {found['count']:,} value(s) do not parse as {found['type']} ({examples})")
        for where, values in self.unmapped.items():
            shown = ", ".join(f"{v!r} ({n:,})" for v, n in list(values.items())[:EXAMPLES])
            said.append(f"{where}: value(s) not in the value map, delivered as they came: {shown}")
        return said


# --- reading the inputs --------------------------------------------------------------------------


def input_files(spec: Input, name: str, given: Path) -> list[Path]:
    """The files of input `name`: `given` itself when it is a file, else the glob under it."""
    if given.is_file():
        return [given]
    if not given.is_dir():
        raise MappingError(f"input {name}: {given} is neither a file nor a folder")
    files = sorted({p for pattern in spec.files for p in given.glob(pattern) if p.is_file()})
    if not files:
        raise MappingError(f"input {name}: no file matches {' or '.join(map(repr, spec.files))} in {given}")
    if spec.single_file and len(files) > 1:
        raise MappingError(
            f"input {name}: {' and '.join(f.name for f in files)} all match in {given}; keep the one to map"
        )
    return files


def _format(spec: Input, files: list[Path], name: str) -> str:
    if spec.format:
        return spec.format
    kinds = set()
    for f in files:
        suffixes = [s.lower() for s in f.suffixes]
        if suffixes and suffixes[-1] == ".gz":
            suffixes.pop()
        kinds.add(SUFFIX_FORMATS.get(suffixes[-1] if suffixes else ""))
    if len(kinds) != 1 or None in kinds:
        raise MappingError(
            f"input {name}: cannot tell the format of {', '.join(f.name for f in files)}; declare format: csv, parquet or jsonl"
        )
    return kinds.pop()


def _scan(con: duckdb.DuckDBPyConnection, spec: Input, files: list[Path], kind: str) -> str:
    """A relation over the files with every column as delivered plus `filename`."""
    paths = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
    if kind == "csv":
        o = spec.csv
        return (
            f"read_csv({paths}, all_varchar = true, header = {str(o.header).lower()}, "
            f"delim = {_lit(o.delimiter)}, quote = {_lit(o.quote)}, encoding = {_lit(o.encoding)}, "
            "filename = true, union_by_name = true)"
        )
    if kind == "parquet":
        return f"read_parquet({paths}, filename = true, file_row_number = true, union_by_name = true)"
    return f"read_json({paths}, format = 'newline_delimited', filename = true, union_by_name = true)"


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


INTEGER_TYPES = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER")


def _number(column: InputColumn, expr: str, delivered_type: str, text: str) -> str:
    number = f"replace(replace({text}, '.', ''), ',', '.')" if column.decimal_comma else text
    delivered_number = delivered_type in (*INTEGER_TYPES, "DOUBLE", "FLOAT") or delivered_type.startswith("DECIMAL")
    if column.type == "decimal":
        return f"cast({expr} as double)" if delivered_number else f"try_cast({number} as double)"
    value = f"cast({expr} as decimal(38, 6))" if delivered_number else f"try_cast({number} as decimal(38, 6))"
    return f"case when {value} = trunc({value}) then cast({value} as bigint) end"


def _boolean(column: InputColumn, expr: str, delivered_type: str, text: str) -> str:
    if delivered_type == "BOOLEAN":
        return expr
    trues = ", ".join(_lit(v.lower()) for v in column.true_values)
    falses = ", ".join(_lit(v.lower()) for v in column.false_values)
    return f"case when lower({text}) in ({trues}) then true when lower({text}) in ({falses}) then false end"


def _json(column: InputColumn, expr: str, delivered_type: str, text: str) -> str:
    if delivered_type.startswith(("STRUCT", "MAP")) or delivered_type.endswith("]"):
        return f"to_json({expr})"
    return expr if delivered_type == "JSON" else f"try_cast({text} as json)"


def _date(column: InputColumn, expr: str, delivered_type: str, text: str) -> str:
    if delivered_type == "DATE":
        return expr
    if column.format:
        return f"cast(try_strptime({text}, {_formats(column)}) as date)"
    return f"try_cast({text} as date)"


def _formats(column: InputColumn) -> str:
    return "[" + ", ".join(_lit(f) for f in column.format) + "]"


def _timestamp(column: InputColumn, expr: str, delivered_type: str, text: str, zone: str | None) -> str:
    """A timestamptz: epoch numbers are UTC; values without an offset are read in `zone`."""
    if column.epoch:
        scale = {"s": 1, "ms": 1_000, "us": 1_000_000}[column.epoch]
        return f"to_timestamp(try_cast({text} as decimal(38, 6)) / {scale})"
    if delivered_type == "TIMESTAMP WITH TIME ZONE":
        return expr
    if delivered_type.startswith("TIMESTAMP") or delivered_type == "DATE":
        return f"timezone({_lit(zone)}, cast({expr} as timestamp))"
    if column.format and all("%z" in f or "%Z" in f for f in column.format):
        return f"cast(try_strptime({text}, {_formats(column)}) as timestamptz)"  # each value's own offset
    if column.format:
        return f"timezone({_lit(zone)}, try_strptime({text}, {_formats(column)}))"
    # ISO 8601: a value with its own offset keeps it; one without is read in the declared zone
    return (
        f"case when regexp_matches({text}, '(Z|z|[+-][0-9]{{2}}(:?[0-9]{{2}})?)$') then try_cast({text} as timestamptz) "
        f"else timezone({_lit(zone)}, try_cast({text} as timestamp)) end"
    )


def _typed(column: InputColumn, expr: str, delivered_type: str, zone: str | None) -> str:
    """SQL typing `expr` (the delivered column) as the column declares; NULL where it does not parse."""
    text = f"nullif(trim(cast({expr} as varchar)), '')"
    if column.type == "text":
        return text
    if column.type == "timestamp":
        return _timestamp(column, expr, delivered_type, text, zone)
    typers = {"integer": _number, "decimal": _number, "boolean": _boolean, "json": _json, "date": _date}
    return typers[column.type](column, expr, delivered_type, text)


def read_input(con: duckdb.DuckDBPyConnection, mapping: Mapping, name: str, given: Path) -> tuple[dict, dict]:
    """Create table `name` of the input's typed columns with lineage. Returns (files and records,
    unparsed values per column)."""
    spec = mapping.inputs[name]
    files = input_files(spec, name, given)
    kind = _format(spec, files, name)
    relation = _scan(con, spec, files, kind)
    try:
        delivered = {r[0]: r[1] for r in con.execute(f"describe select * from {relation}").fetchall()}
    except duckdb.Error as exc:
        raise MappingError(f"input {name}: cannot read {', '.join(str(f) for f in files)} as {kind}: {exc}") from None
    by_key = {c.strip().lower(): c for c in delivered}
    selects, typed_columns = [], {}
    for column_name, column in spec.columns.items():
        found = next((by_key[s.strip().lower()] for s in column.source if s.strip().lower() in by_key), None)
        if found is None:
            if column.required:
                raise MappingError(
                    f"{mapping.at('inputs', name, 'columns', column_name)}: no column {' or '.join(map(repr, column.source))} "
                    f"in {', '.join(f.name for f in files)} (it has: {', '.join(c for c in delivered if c != 'filename')})"
                )
            selects.append(f"cast(null as {_sql_type(column.type)}) as {ident(column_name)}")
            continue
        src = ident(found)
        zone = column.timezone or spec.timezone
        selects.append(f"{_typed(column, src, delivered[found], zone)} as {ident(column_name)}")
        if column.type not in ("text",):
            selects.append(f"nullif(trim(cast({src} as varchar)), '') as {ident(column_name + RAW)}")
            typed_columns[column_name] = column.type
    # the record's position in its file: Parquet says it; CSV and JSON Lines are scanned in file
    # order (DuckDB keeps insertion order), numbered over the whole scan, then from 1 per file (a
    # window partitioned by file would number each file's rows in no particular order)
    row = "file_row_number + 1" if kind == "parquet" else "row_number() over ()"
    con.execute(
        f"create or replace temp table {ident(name)} as select {', '.join(selects)}, "
        f"parse_filename(filename) as _file, cast({row} as bigint) as _row from {relation}"
    )
    if kind != "parquet":
        con.execute(
            f"create or replace temp table {ident(name)} as select * replace "
            f"(_row - min(_row) over (partition by _file) + 1 as _row) from {ident(name)}"
        )
    records = con.execute(f"select count(*) from {ident(name)}").fetchone()[0]
    unparsed = {}
    for column_name, kind_name in typed_columns.items():
        c, raw = ident(column_name), ident(column_name + RAW)
        count = con.execute(f"select count(*) from {ident(name)} where {c} is null and {raw} is not null").fetchone()[0]
        if count:
            examples = con.execute(
                f"select _file, _row, {raw} from {ident(name)} where {c} is null and {raw} is not null "
                f"order by _file, _row limit {EXAMPLES}"
            ).fetchall()
            unparsed[f"{name}.{column_name}"] = {
                "count": count,
                "type": kind_name,
                "examples": [{"file": f, "row": r, "value": v} for f, r, v in examples],
            }
    return {"files": [f.name for f in files], "format": kind, "records": records}, unparsed


def _sql_type(kind: str) -> str:
    return {
        "text": "varchar",
        "integer": "bigint",
        "decimal": "double",
        "timestamp": "timestamptz",
        "date": "date",
        "boolean": "boolean",
        "json": "json",
    }[kind]


# --- steps and outputs ---------------------------------------------------------------------------


def _column_sql(spec) -> str:
    if isinstance(spec, Constant):
        value = spec.value
        if value is None:
            return "cast(null as varchar)"
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, int | float) else _lit(value)
    if isinstance(spec, ValueMap):
        key = f"lower(trim(cast(({spec.expr}) as varchar)))"
        whens = " ".join(
            f"when {key} = {_lit(k.strip().lower())} then {'null' if v is None else _lit(v)}"
            for k, v in spec.map.items()
        )
        other = _lit(spec.other) if spec.other is not None else f"cast(({spec.expr}) as varchar)"
        return f"case {whens} else {other} end"
    return spec


def _rule_sql(node: Node) -> str:
    """SQL: the name of the first classification rule a row meets and its reason, `<name>: <reason>`."""
    if not node.classify:
        return "cast(null as varchar)"
    return (
        "case "
        + " ".join(f"when ({r.when}) then {_lit(r.name + ': ')} || ({r.reason})" for r in node.classify)
        + " end"
    )


OUTPUT_PREFIX = "output__"  # outputs are tables of their own namespace: an input may share a name


def build_node(con: duckdb.DuckDBPyConnection, mapping: Mapping, kind: str, name: str, node: Node) -> None:
    """Create table `name` (`output__<name>` for an output: the node's rows, with lineage) and
    table `<that>__classified`."""
    label, name = name, (OUTPUT_PREFIX + name if kind == "outputs" else name)
    if len(node.source) == 1:
        source = ident(node.source[0])
    else:
        source = "(" + " union all by name ".join(f"select * from {ident(n)}" for n in node.source) + ")"
    source_columns = {r[0] for r in con.execute(f"describe select * from {source}").fetchall()}
    joins = ""
    for j in node.join:
        other = ident(j.node)
        present = {r[0] for r in con.execute(f"describe {other}").fetchall()}
        keep = [c for c in present if c not in j.using and not c.startswith("_") and not c.endswith(RAW)]
        alias = ident(f"__j_{j.node}")
        picked = ", ".join(ident(c) for c in [*j.using, *keep])
        joins += f" {j.how} join (select {picked} from {other}) as {alias} using ({', '.join(map(ident, j.using))})"
        source_columns |= set(keep)
    explode = ""
    lineage_index = ""
    if node.explode:
        (alias, list_sql) = next(iter(node.explode.items()))
        try:
            list_type = con.execute(f"describe select ({list_sql}) as l from {source} as s{joins}").fetchall()[0][1]
        except duckdb.Error as exc:
            raise MappingError(f"{mapping.at(kind, label, 'explode')}: {str(exc).splitlines()[0]}") from None
        listed = {
            "JSON": f"cast({list_sql} as json[])",
            "VARCHAR": f"cast(try_cast({list_sql} as json) as json[])",
        }.get(list_type, list_sql)
        if node.keep_empty:
            listed = f"case when coalesce(len({listed}), 0) = 0 then [null] else {listed} end"
        explode = (
            f", lateral (select unnest(l) as {ident(alias)}, generate_subscripts(l, 1) as {ident(alias + '_index')} "
            f"from (select {listed} as l)) as x"
        )
        lineage_index = f", {ident(alias + '_index')} as _index"
    where = f"where ({node.where})" if node.where else ""
    base = f"__{name}__rows"
    for i, check in enumerate(node.checks):
        _run_check(con, mapping, kind, label, i, check, f"select * from {source} as s{joins} {where}")
    try:
        con.execute(
            f"create or replace temp view {ident(base)} as select *{lineage_index}, {_rule_sql(node)} as _rule "
            f"from {source} as s{joins}{explode} {where}"
        )
        con.execute(
            f"create or replace temp table {ident(name + '__classified')} as select {_lit(label)} as node, _rule as rule, "
            f"_file as file, _row as row from {ident(base)} where _rule is not null"
        )
        selects = []
        for column, spec in node.columns.items():
            selects.append(f"({_column_sql(spec)}) as {ident(column)}")
            if isinstance(spec, ValueMap):  # the delivered value, for the report of values the map lacks
                selects.append(f"cast(({spec.expr}) as varchar) as {ident(column + DELIVERED)}")
            if isinstance(spec, str) and spec in source_columns and spec + RAW in source_columns and not node.group_by:
                selects.append(f"{ident(spec + RAW)} as {ident(column + RAW)}")
        if node.group_by:
            keys = ", ".join(f"({_column_sql(node.columns[g])})" for g in node.group_by)
            lineage = "min(_file) as _file, min(_row) as _row"
            tail = f"group by {keys}"
        else:
            lineage = "_file, _row" + (", _index" if node.explode else "")
            tail = ""
        con.execute(
            f"create or replace temp table {ident(name)} as select {', '.join(selects)}, {lineage} "
            f"from {ident(base)} where _rule is null {tail}"
        )
    except duckdb.Error as exc:
        raise MappingError(f"{mapping.at(kind, label)}: {str(exc).splitlines()[0]}") from None


def _run_check(con, mapping: Mapping, kind: str, name: str, i: int, check, rows_sql: str) -> None:
    try:
        found = con.execute(
            f"select _file, _row, cast({ident(check.column)} as varchar), count(*) over () "
            f"from ({rows_sql}) where ({check.fail_when}) order by _file, _row limit 1"
        ).fetchone()
    except duckdb.Error as exc:
        raise MappingError(f"{mapping.at(kind, name, 'checks')}[{i}]: {str(exc).splitlines()[0]}") from None
    if found is not None:
        file, row, value, count = found
        raise MappingError(
            f"{file} row {row}: column {check.column} has {count:,} value(s) {check.problem}, e.g. {value!r} "
            f"(check at {mapping.at(kind, name, 'checks')}[{i}])"
        )


def _text_sql(column: str, sql_type: str) -> str:
    c = ident(column)
    if sql_type == "TIMESTAMP WITH TIME ZONE":
        return (
            f"case when epoch_us({c}) % 1000000 = 0 then strftime(timezone('UTC', {c}), '%Y-%m-%dT%H:%M:%S+00:00') "
            f"else strftime(timezone('UTC', {c}), '%Y-%m-%dT%H:%M:%S.%f+00:00') end"
        )
    if sql_type == "TIMESTAMP":
        return f"strftime({c}, '%Y-%m-%dT%H:%M:%S')"
    if sql_type == "DATE":
        return f"strftime({c}, '%Y-%m-%d')"
    if sql_type == "BOOLEAN":
        return f"case when {c} then 'true' when not {c} then 'false' end"
    return f"cast({c} as varchar)"


def output_select(con: duckdb.DuckDBPyConnection, mapping: Mapping, name: str, node: Node) -> str:
    """SQL of output `name` as the contract's columns, as text, in a deterministic order."""
    table = ident(OUTPUT_PREFIX + name)
    types = {r[0]: r[1] for r in con.execute(f"describe {table}").fetchall()}
    currency = node.currency or _input_of(mapping, name).currency
    selects = []
    for column in SOURCES_BY_NAME[name].column_names:
        if column in node.columns:
            text = _text_sql(column, types[column])
            if column + RAW in types:
                text = f"coalesce({text}, {ident(column + RAW)})"
        elif column == "currency" and currency:
            text = _lit(currency)
        else:
            text = "cast(null as varchar)"
        selects.append(f"{text} as {ident(column)}")
    # file order; rows of one record (a grouped step's, an exploded list's) then by their values
    lineage = "_file, _row" + (", _index" if node.explode else "")
    by_values = ", ".join(map(ident, node.columns))
    order = ", ".join(ident(g) for g in node.group_by) if node.group_by else f"{lineage}, {by_values}"
    return f"select {', '.join(selects)} from {table} order by {order}"


def _input_of(mapping: Mapping, name: str) -> Input:
    node = mapping.outputs.get(name) or mapping.steps[name]
    while node.source[0] not in mapping.inputs:
        node = mapping.steps[node.source[0]]
    return mapping.inputs[node.source[0]]


def _unmapped(con: duckdb.DuckDBPyConnection, name: str, node: Node) -> dict[str, dict]:
    """Per value-mapped column of output `name`, the delivered values its map does not know."""
    found, table = {}, ident(OUTPUT_PREFIX + name)
    for column, spec in node.columns.items():
        if not isinstance(spec, ValueMap) or spec.other is not None:
            continue
        known = ", ".join(_lit(k.strip().lower()) for k in spec.map)
        value = ident(column + DELIVERED)
        rows = con.execute(
            f"select {value} as v, count(*) from {table} "
            f"where {value} is not null and lower(trim({value})) not in ({known}) group by 1 order by 2 desc, 1"
        ).fetchall()
        if rows:
            found[f"{name}.{column}"] = dict(rows)
    return found


def _has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    return column in {r[0] for r in con.execute(f"describe {ident(table)}").fetchall()}


def _classified(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    """Rows of a step or output left out, per rule (the rule's name, without the row's reason)."""
    return dict(
        con.execute(
            f"select split_part(rule, ':', 1), count(*) from {ident(table + '__classified')} group by 1 order by 1"
        ).fetchall()
    )


# --- running -------------------------------------------------------------------------------------


def run_mapping(mapping: Mapping, given: dict[str, Path] | Path, landing_dir: Path | None) -> MappingReport:
    """Map the export at `given` (one path for every input, or a path per input name) and, with a
    `landing_dir`, replace that folder with the landing files. Without one, only the report: the
    preflight of an export."""
    started = time.perf_counter()
    paths = given if isinstance(given, dict) else {name: Path(given) for name in mapping.inputs}
    missing = [n for n in mapping.inputs if n not in paths]
    if missing:
        raise MappingError(f"{mapping.at('inputs')}: no path given for input(s) {missing}")
    report = MappingReport(mapping.name)
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        for name in mapping.inputs:
            report.inputs[name], unparsed = read_input(con, mapping, name, Path(paths[name]))
            report.unparsed.update(unparsed)
        for name, node in mapping.steps.items():
            build_node(con, mapping, "steps", name, node)
            report.classified[name] = _classified(con, name)
        selects = {}
        for name, node in mapping.outputs.items():
            build_node(con, mapping, "outputs", name, node)
            selects[name] = output_select(con, mapping, name, node)
            table = OUTPUT_PREFIX + name
            report.outputs[name] = {"rows": con.execute(f"select count(*) from {ident(table)}").fetchone()[0]}
            report.classified[name] = _classified(con, table)
            report.unmapped.update(_unmapped(con, name, node))
        report.seconds = round(time.perf_counter() - started, 2)
        if landing_dir is not None:
            _write(con, mapping, selects, report, Path(landing_dir))
    finally:
        con.close()
    return report


def _write(
    con: duckdb.DuckDBPyConnection, mapping: Mapping, selects: dict[str, str], report: MappingReport, landing_dir: Path
) -> None:
    """Write every output into a new folder beside `landing_dir`, then swap it in: the old landing
    folder is removed only once the new one is complete."""
    landing_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{landing_dir.name}.new-", dir=landing_dir.parent))
    try:
        for name, select in selects.items():
            (staging / name).mkdir()
            con.execute(f"copy ({select}) to {_lit(str(staging / name / f'{name}.parquet'))} (format parquet)")
        side = staging / REPORT_DIR
        side.mkdir()
        tables = [*mapping.steps, *(OUTPUT_PREFIX + n for n in selects)]
        classified = " union all ".join(f"select * from {ident(t + '__classified')}" for t in tables)
        con.execute(
            f"copy ({classified} order by node, file, row) to {_lit(str(side / 'classified.parquet'))} (format parquet)"
        )
        unparsed = [
            f"select {_lit(i)} as input, {_lit(c)} as input_column, _file as file, _row as row, {ident(c + RAW)} as value "
            f"from {ident(i)} where {ident(c)} is null and {ident(c + RAW)} is not null"
            for i, spec in mapping.inputs.items()
            for c, column in spec.columns.items()
            if column.type != "text" and _has_column(con, i, c + RAW)
        ]
        if unparsed:
            con.execute(
                f"copy ({' union all '.join(unparsed)} order by input, input_column, file, row) "
                f"to {_lit(str(side / 'unparsed.parquet'))} (format parquet)"
            )
        (side / "report.json").write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if landing_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{landing_dir.name}.old-", dir=landing_dir.parent))
        old.rmdir()
        landing_dir.rename(old)
    staging.rename(landing_dir)
    if old is not None:
        shutil.rmtree(old)


def map_export(mapping: str | Path, given: dict[str, Path] | Path, landing_dir: Path | None) -> MappingReport:
    """`run_mapping` with a built-in mapping's name or a mapping file."""
    return run_mapping(load_mapping(mapping_path(mapping)), given, landing_dir)
