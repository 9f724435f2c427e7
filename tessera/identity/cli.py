"""`tessera identity resolve INPUT --config MAPPING.yaml --out OUT`: the pipeline's matcher on any file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import duckdb

from tessera.identity.config import load_mapping
from tessera.identity.engine import resolve
from tessera.identity.stable_ids import assign_stable_ids
from tessera.sql import ident


def read_input(con: duckdb.DuckDBPyConnection, path: Path, table: str) -> None:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        con.execute(
            f"create or replace table {ident(table)} as select * from read_csv(?, all_varchar = true, header = true)",
            [str(path)],
        )
    elif suffix == ".parquet":
        con.execute(f"create or replace table {ident(table)} as select * from read_parquet(?)", [str(path)])
    else:
        raise ValueError(f"{path}: input must be .csv or .parquet")


def resolve_file(input_path: Path, mapping_path: Path, out_path: Path, previous: Path | None = None) -> dict:
    config = load_mapping(mapping_path)
    con = duckdb.connect()
    try:
        read_input(con, input_path, "input_records")
        columns = {d[0] for d in con.execute("select * from input_records limit 0").description}
        needed = {config.record_id, *[c for cols in config.columns.values() for c in cols], *config.extra_identifiers}
        missing = sorted(needed - columns)
        if missing:
            raise ValueError(f"{input_path}: the mapping names columns the file lacks: {missing}")
        result = resolve(con, "input_records", config)
        assignments = result.assignments.rename(columns={"cluster_id": "person_id"})
        if previous is not None:
            con.execute(
                "create or replace table previous_map as select * from read_csv(?, all_varchar = true)"
                if previous.suffix == ".csv"
                else "create or replace table previous_map as select * from read_parquet(?)",
                [str(previous)],
            )
            prev = con.execute("select record_id, person_id as customer_id from previous_map").df()
            stable = assign_stable_ids(prev, result.assignments, result.edges)
            assignments = stable.identity_map.rename(columns={"customer_id": "person_id"})
        out_path.parent.mkdir(parents=True, exist_ok=True)
        con.register("out_df", assignments[["record_id", "person_id"]])
        fmt = "format parquet" if out_path.suffix.lower() == ".parquet" else "format csv, header true"
        con.execute(f"copy (select * from out_df order by record_id) to ? ({fmt})", [out_path.as_posix()])
        return result.stats
    finally:
        con.close()


def add_parser(sub: argparse._SubParsersAction) -> None:
    identity = sub.add_parser("identity", help="identity resolution on any person table")
    isub = identity.add_subparsers(dest="identity_command", required=True)
    r = isub.add_parser("resolve", help="cluster person records: writes record_id, person_id")
    r.add_argument("input", type=Path, help="CSV or Parquet with a record id column")
    r.add_argument("--config", type=Path, required=True, help="YAML mapping of columns to attributes")
    r.add_argument("--out", type=Path, required=True, help="output .csv or .parquet")
    r.add_argument("--previous", type=Path, help="an earlier OUT: keep its person ids stable")
    r.set_defaults(func=_cmd_resolve)


def _cmd_resolve(args: argparse.Namespace) -> int:
    stats = resolve_file(args.input, args.config, args.out, args.previous)
    print(json.dumps(dict(stats.items()), indent=2, default=str))
    print(f"wrote {args.out}")
    return 0
