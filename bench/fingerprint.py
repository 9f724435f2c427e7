"""Are two builds of the same landing files the same? Fingerprint a warehouse, compare two.

    .venv/bin/python bench/fingerprint.py data/bench/scale/1m/data/tessera.duckdb --out run1.json
    .venv/bin/python bench/fingerprint.py --compare run1.json run2.json

`make bench` records the same fingerprint in bench/results/scale_<size>.json, taken right after the
pipeline: keep a copy of that file, run the bench again, and compare the two files.

A fingerprint holds, per table, its row count and an order-independent hash of its rows: the sum
of DuckDB's `hash` of each row (every column packed in a struct). Tables: every table in the
`publish`, `ml`, `decisioning` and `identity` schemas, and the customer marts the models read
(`dim_customers`, `customer_rfm`, `customer_features`).

Columns that differ between two correct builds by design are left out, and the fingerprint names
them: MLflow and Dagster run ids (`*run_id`), model registry versions (`model_version`), and the
wall-clock time a row was written (VOLATILE_COLUMNS). Everything else, the customer keys, scores,
lists, decisions and rendered messages included, must be equal.

`--compare` prints each table whose rows or hash differ and exits with status 1 if any does.
The warehouse is opened read-only, so it can run beside the Dagster UI but not beside a run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

SCHEMAS = ("publish", "ml", "decisioning", "identity")
MARTS = ("dim_customers", "customer_rfm", "customer_features")
# when the row was written, not what it says
VOLATILE_COLUMNS = frozenset({"created_at", "evaluated_at", "assigned_at", "first_seen_at", "event_at", "run_at"})


def volatile(column: str) -> bool:
    return column.endswith("run_id") or column == "model_version" or column in VOLATILE_COLUMNS


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def fingerprint(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    schemas = ", ".join(f"'{s}'" for s in SCHEMAS)
    tables = con.execute(
        "select table_schema, table_name from information_schema.tables "
        f"where table_type = 'BASE TABLE' and table_schema in ({schemas}) order by all"
    ).fetchall()
    tables += [("marts", name) for name in MARTS]
    result = {}
    for schema, name in tables:
        columns = [row[0] for row in con.execute(f"describe {quoted(schema)}.{quoted(name)}").fetchall()]
        kept = [c for c in columns if not volatile(c)]
        row = "struct_pack(" + ", ".join(f"{quoted(c)} := {quoted(c)}" for c in kept) + ")"
        # hash is a UBIGINT: summed as HUGEINT so that no table overflows it
        rows, digest = con.execute(
            f"select count(*), coalesce(sum(cast(hash({row}) as hugeint)), 0) from {quoted(schema)}.{quoted(name)}"
        ).fetchall()[0]
        result[f"{schema}.{name}"] = {
            "rows": rows,
            "hash": str(digest),
            "left_out": sorted(set(columns) - set(kept)),
        }
    return result


def differences(a: dict[str, dict], b: dict[str, dict]) -> list[str]:
    lines = []
    for table in sorted(set(a) | set(b)):
        if table not in a or table not in b:
            lines.append(f"{table}: only in {'the first' if table in a else 'the second'}")
        elif a[table]["rows"] != b[table]["rows"]:
            lines.append(f"{table}: {a[table]['rows']:,} rows against {b[table]['rows']:,}")
        elif a[table]["hash"] != b[table]["hash"]:
            lines.append(f"{table}: same {a[table]['rows']:,} rows, different contents")
    return lines


def load(path: Path) -> dict[str, dict]:
    """A fingerprint written by --out, or the one in a scale bench result (scale_<size>.json)."""
    data = json.loads(path.read_text())
    if "steps" in data:  # bench/scale.py's result
        if not data.get("fingerprint"):
            raise SystemExit(f"{path}: the bench run failed or predates fingerprints: nothing to compare")
        return data["fingerprint"]
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("warehouse", nargs="?", type=Path, help="DuckDB file to fingerprint")
    parser.add_argument("--out", type=Path, help="where the fingerprint goes (JSON)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="two fingerprints")
    args = parser.parse_args(argv)
    if args.compare:
        a, b = (load(path) for path in args.compare)
        lines = differences(a, b)
        print("\n".join(lines) if lines else f"identical: {len(a)} tables")
        return 1 if lines else 0
    if args.warehouse is None or args.out is None:
        parser.error("give a warehouse and --out, or --compare A B")
    if not args.warehouse.is_file():
        parser.error(f"no DuckDB file at {args.warehouse}")
    with duckdb.connect(str(args.warehouse), read_only=True) as con:
        result = fingerprint(con)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(result)} tables, {sum(t['rows'] for t in result.values()):,} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
