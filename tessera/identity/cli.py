"""`tessera identity resolve INPUT --config MAPPING.yaml --out OUT`: the pipeline's matcher on any file.

`--engine spark` runs the same matcher on a local SparkSession (tessera/identity/spark.py; needs
pyspark and Java) instead of DuckDB; the output is the same file.

Output: record_id, person_id. Person ids are tessera's stable ids (`tc_` + 16 hex) from the first
run on; with `--previous` an earlier output's ids are kept (new records join them, merges keep the
larger id, splits get new ones). With `--state DIR` the matcher keeps its model and pair scores in
DIR, and the next run compares only the records that are new or changed. Progress goes to stderr, the summary to stdout; a missing file or a
bad mapping is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl

from tessera.identity.config import load_mapping
from tessera.identity.engine import MatcherState, resolve
from tessera.identity.stable_ids import assign_stable_ids
from tessera.sql import ident

# Refusing more than this share of the links is worth a look: a column holding placeholders, or
# mapped to the wrong attribute; one attribute behind at least DOMINANT_SHARE of the
# contradictions is named in the warning.
REFUSED_SHARE_WARNING = 0.05
DOMINANT_SHARE = 0.5


class InputError(ValueError):
    """A file or mapping the command cannot use: reported in one line."""


def read_input(con: duckdb.DuckDBPyConnection, path: Path, table: str) -> None:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            con.execute(
                f"create or replace table {ident(table)} as select * from read_csv(?, all_varchar = true, header = true)",
                [str(path)],
            )
        elif suffix == ".parquet":
            con.execute(f"create or replace table {ident(table)} as select * from read_parquet(?)", [str(path)])
        else:
            raise InputError(f"{path}: input must be .csv or .parquet")
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot be read: {str(exc).splitlines()[0]}") from exc


def _progress(message: str, started: float) -> None:
    """One progress line on stderr: seconds since the command started, then what is done."""
    print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


ENGINES = ("duckdb", "spark")


def _resolve_on_spark(input_path: Path, config, mapping_path: Path):
    """The records of `input_path` (every column text) resolved on a local SparkSession."""
    from tessera.identity import spark as spark_engine

    spark = spark_engine.local_session()
    try:
        if input_path.suffix.lower() == ".csv":
            frame = spark.read.csv(str(input_path), header=True)  # every column text, as on DuckDB
        else:
            frame = spark.read.parquet(str(input_path))
        missing = sorted(_needed_columns(config) - set(frame.columns))
        if missing:
            raise InputError(f"{input_path}: the mapping {mapping_path} names columns the file lacks: {missing}")
        return spark_engine.resolve(spark, frame, config)
    finally:
        spark.stop()


def _needed_columns(config) -> set[str]:
    return {
        config.record_id,
        *[c for cols in config.columns.values() for c in cols],
        *config.other_columns,
        *config.extra_identifiers,
    }


def resolve_file(
    input_path: Path,
    mapping_path: Path,
    out_path: Path,
    previous: Path | None = None,
    progress: bool = False,
    state: Path | None = None,
    retrain: bool = False,
    engine: str = "duckdb",
) -> dict:
    """Resolve `input_path` with the mapping into `out_path`; `previous`, an earlier output whose
    person ids are kept; `state`, a folder holding the matcher's state between runs (read when
    present, written after): the run then compares only new and changed records."""
    started = time.perf_counter()
    if state is not None and engine != "duckdb":
        # incremental matching keeps its state through DuckDB; on Spark every run is a full one
        raise InputError("--state works with --engine duckdb only: a Spark run trains and scores every pair")
    try:
        config = load_mapping(mapping_path)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if previous is not None and not previous.is_file():  # before the work, not after it
        raise InputError(f"--previous {previous}: file not found")
    say = (lambda message: _progress(message, started)) if progress else None
    con = duckdb.connect()
    try:
        read_input(con, input_path, "input_records")
        columns = {d[0] for d in con.execute("select * from input_records limit 0").description}
        missing = sorted(_needed_columns(config) - columns)
        if missing:
            raise InputError(f"{input_path}: the mapping {mapping_path} names columns the file lacks: {missing}")
        if say:
            count = con.execute("select count(*) from input_records").fetchall()[0][0]
            say(f"load done: read {count:,} records; training the model and scoring candidate pairs on {engine}")
        try:
            if engine == "spark":
                result = _resolve_on_spark(input_path, config, mapping_path)
            else:
                try:
                    earlier = MatcherState.load(state) if state is not None else None
                except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError) as exc:
                    raise InputError(f"{state}: not a matcher state this command wrote: {exc}") from exc
                result = resolve(con, "input_records", config, previous=earlier, retrain=retrain, progress=say)
        except ValueError as exc:  # a duplicated or missing record id
            raise InputError(f"{input_path}: {exc}") from exc
        if say and engine == "spark":  # on DuckDB the matcher said each phase itself
            say(f"resolve on spark done: {result.stats['clusters']:,} people")
        prev = pd.DataFrame(columns=["record_id", "customer_id"])
        if previous is not None:
            read_input(con, previous, "previous_map")
            prev = con.execute("select record_id, person_id as customer_id from previous_map").df()
        stable = assign_stable_ids(prev, result.assignments, result.edges)
        assignments = stable.identity_map.rename(columns={"customer_id": "person_id"})
        out_path.parent.mkdir(parents=True, exist_ok=True)
        con.register("out_df", assignments[["record_id", "person_id"]])
        fmt = "format parquet" if out_path.suffix.lower() == ".parquet" else "format csv, header true"
        con.execute(f"copy (select * from out_df order by record_id) to ? ({fmt})", [out_path.as_posix()])
        if state is not None and result.state is not None:
            result.state.save(state)
        if say:
            say(f"write done: {len(assignments):,} rows to {out_path}")
        stats = dict(result.stats)
        stats["id_changes"] = {k: int(v) for k, v in stable.events["event_type"].value_counts().items()}
        stats["refusal_reasons"] = _refusal_summary(result.edges)
        stats["seconds"] = round(time.perf_counter() - started, 2)
        return stats
    finally:
        con.close()


def _refusal_summary(edges: pd.DataFrame) -> dict:
    """Refused links by kind of reason (cannot-link, weak groups, ...)."""
    reasons = edges["refused_reason"].dropna()
    return {str(k): int(v) for k, v in reasons.str.split(":").str[0].value_counts().items()}


def summary(stats: dict) -> list[str]:
    """The lines a user reads first, then warnings."""
    lines = [
        f"{stats['records']:,} records -> {stats['clusters']:,} people "
        f"(largest {stats['max_cluster_size']}), in {stats.get('seconds', 0)} s",
        f"links: {stats['deterministic_links']:,} deterministic, {stats['fuzzy_links']:,} probabilistic; "
        f"{stats['refused_links']:,} refused {stats.get('refusal_reasons', {})}",
        f"candidate pairs: {stats['candidate_pairs']:,}; expected matching pairs: "
        f"{stats.get('expected_matching_pairs', 0):,}",
        f"training: {stats.get('training', '')}",
    ]
    links = stats["deterministic_links"] + stats["fuzzy_links"]
    against = stats.get("cannot_links_by_attribute") or {}
    if against:
        lines.append(f"contradictions inside linked groups, by the attribute most against: {against}")
    if links and stats["refused_links"] / links > REFUSED_SHARE_WARNING:
        contradictions = sum(against.values())
        top, count = next(iter(against.items()), (None, 0))
        if top is not None and count / contradictions >= DOMINANT_SHARE:
            lines.append(
                f"warning: {stats['refused_links']:,} of {links:,} links were refused, and {top} is the strongest "
                f"evidence against in {count:,} of the {contradictions:,} contradictions behind them: check its "
                "mapping, and placeholder or recycled values in it"
            )
        else:
            lines.append(
                f"warning: {stats['refused_links']:,} of {links:,} links were refused because the records they join "
                "compare as different people: check for placeholder values or a column mapped to the wrong attribute"
            )
    skipped = stats.get("skipped_blocks_per_key") or {}
    if skipped:
        lines.append(f"note: blocking keys too common to compare alone (max_block_size): {skipped}")
    lines.extend(f"note: {n}" for n in stats.get("training_notes", []))
    return lines


def add_parser(sub: argparse._SubParsersAction) -> None:
    identity = sub.add_parser("identity", help="identity resolution on any person table")
    isub = identity.add_subparsers(dest="identity_command", required=True)
    r = isub.add_parser(
        "resolve",
        help="cluster person records: writes record_id, person_id",
        description="Cluster the records of a CSV or Parquet file into people (docs/identity.md).",
    )
    r.add_argument("input", type=Path, help="CSV or Parquet with a record id column")
    r.add_argument("--config", type=Path, required=True, help="YAML mapping of columns to attributes")
    r.add_argument("--out", type=Path, required=True, help="output .csv or .parquet")
    r.add_argument("--previous", type=Path, help="an earlier OUT: keep its person ids stable")
    r.add_argument(
        "--state",
        type=Path,
        help="a folder for the matcher's model and pair scores between runs: the next run trains nothing "
        "and compares only new and changed records (created on the first run)",
    )
    r.add_argument("--retrain", action="store_true", help="with --state: train again and compare every pair")
    r.add_argument("--json", action="store_true", help="print every figure as JSON instead of the summary")
    r.add_argument("--quiet", action="store_true", help="no progress lines on stderr (one per phase by default)")
    r.add_argument(
        "--engine",
        choices=ENGINES,
        default="duckdb",
        help="where the matcher runs: duckdb, or spark (a local SparkSession; needs pyspark and Java)",
    )
    r.set_defaults(func=_cmd_resolve)


def _cmd_resolve(args: argparse.Namespace) -> int:
    # an InputError is one line on stderr and exit code 2 (tessera/cli.py main, tessera/errors.py)
    stats = resolve_file(
        args.input,
        args.config,
        args.out,
        args.previous,
        progress=not args.quiet,
        state=args.state,
        retrain=args.retrain,
        engine=args.engine,
    )
    if args.json:
        print(json.dumps(stats, indent=2, default=str))
    else:
        print("\n".join(summary(stats)))
    print(f"wrote {args.out}")
    return 0
