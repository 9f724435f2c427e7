"""Load landing files into DuckDB raw tables, faithfully and with lineage.

Every contract column is stored as text exactly as delivered; a column the contract names but a
file lacks becomes NULL (the source's quality gate decides whether that is acceptable); a column a
file has but the contract does not name is reported, not loaded. Each row keeps the file it came
from and its row number in that file, so a bad value can always be traced back.

The table is replaced inside one transaction: a failed load leaves the previous raw table intact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from tessera.contract import FILE_SUFFIXES, Source


class LandingError(RuntimeError):
    """A landing file that cannot be read at all (as opposed to rows with bad values)."""


@dataclass
class LoadReport:
    source: str
    table: str
    rows: int = 0
    files: list[str] = field(default_factory=list)
    rows_per_file: dict[str, int] = field(default_factory=dict)
    skipped_empty_files: list[str] = field(default_factory=list)
    missing_columns: dict[str, list[str]] = field(default_factory=dict)
    extra_columns: dict[str, list[str]] = field(default_factory=dict)


def landing_files(source_dir: Path) -> list[Path]:
    """Files of accepted formats in a source folder, in a stable (name) order."""
    if not source_dir.is_dir():
        return []
    return sorted(p for p in source_dir.iterdir() if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _file_relation(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[str, list[str], list]:
    """SQL for a relation over one file, its column names, and the query parameters."""
    kind = FILE_SUFFIXES[path.suffix.lower()]
    if kind == "csv":
        sql = "select * from read_csv(?, all_varchar = true, header = true, auto_detect = true)"
    elif kind == "parquet":
        sql = "select * from read_parquet(?)"
    else:
        # read_json would infer types (and reformat timestamps); keep the text as delivered.
        sql = "select json as _doc from read_ndjson_objects(?)"
    try:
        columns = [d[0] for d in con.execute(f"{sql} limit 0", [str(path)]).description]
    except duckdb.Error as exc:
        raise LandingError(f"cannot read landing file {path}: {exc}") from exc
    if kind == "jsonl":
        keys = con.execute(
            "select distinct unnest(json_keys(json)) from read_ndjson_objects(?)", [str(path)]
        ).fetchall()
        columns = sorted(k[0] for k in keys)
    return sql, columns, [str(path)]


def load_source(con: duckdb.DuckDBPyConnection, source: Source, landing_dir: Path, schema: str = "raw") -> LoadReport:
    table = f"{schema}.{source.name}"
    report = LoadReport(source=source.name, table=table)
    column_defs = ", ".join(f"{_quote(c)} varchar" for c in source.column_names)
    con.execute(f"create schema if not exists {schema}")
    con.execute("begin transaction")
    try:
        con.execute(f"create or replace table {table} ({column_defs}, _source_file varchar, _source_row bigint)")
        for path in landing_files(Path(landing_dir) / source.name):
            if path.stat().st_size == 0:
                report.skipped_empty_files.append(path.name)
                continue
            sql, columns, params = _file_relation(con, path)
            present = set(columns)
            missing = [c for c in source.column_names if c not in present]
            extra = [c for c in columns if c not in set(source.column_names) and c != "_doc"]
            if missing:
                report.missing_columns[path.name] = missing
            if extra:
                report.extra_columns[path.name] = extra
            if FILE_SUFFIXES[path.suffix.lower()] == "jsonl":
                select = ", ".join(f"(_doc ->> {_sql_string(c)})::varchar as {_quote(c)}" for c in source.column_names)
            else:
                select = ", ".join(
                    f"cast({_quote(c)} as varchar) as {_quote(c)}" if c in present else f"null::varchar as {_quote(c)}"
                    for c in source.column_names
                )
            insert = (
                f"insert into {table} select {select}, ? as _source_file, "
                f"row_number() over () as _source_row from ({sql}) as f"
            )
            try:
                con.execute(insert, [path.name, *params])
            except duckdb.Error as exc:
                raise LandingError(f"cannot load landing file {path}: {exc}") from exc
            n = con.execute(f"select count(*) from {table} where _source_file = ?", [path.name]).fetchone()[0]
            report.files.append(path.name)
            report.rows_per_file[path.name] = n
            report.rows += n
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return report


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
