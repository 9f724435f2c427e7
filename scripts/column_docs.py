"""Print how many columns are described, per layer: declared in YAML (dbt models and seeds,
tessera/publish/columns.yml) and materialised in the warehouse (tessera/column_docs.py).

    PYTHONPATH=. .venv/bin/python scripts/column_docs.py [--duckdb PATH] [--manifest PATH] [--missing]

--duckdb defaults to the configured warehouse (TESSERA_DUCKDB_PATH / TESSERA_DATA_DIR), opened
read only; --manifest to dbt_project/target/manifest.json (run `dbt parse` first); --missing also
lists the materialised columns of marts, publish and ml that have no description.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

from tessera.column_docs import coverage, declared, materialised, read_manifest, report, undescribed
from tessera.settings import DBT_PROJECT_DIR, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duckdb", type=Path, help="the warehouse file (default: the configured one)")
    parser.add_argument(
        "--manifest", type=Path, default=DBT_PROJECT_DIR / "target" / "manifest.json", help="dbt's manifest.json"
    )
    parser.add_argument("--missing", action="store_true", help="list the undescribed columns of marts, publish, ml")
    args = parser.parse_args(argv)
    path = args.duckdb or load_settings().duckdb_path
    if not path.exists():
        print(f"{path}: no warehouse; run `tessera run` first or pass --duckdb", file=sys.stderr)
        return 2
    try:
        manifest = read_manifest(args.manifest)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables, docs = materialised(con), declared(manifest)
        print(report(coverage(tables, docs)))
        if args.missing:
            for column in undescribed(tables, docs):
                print(f"undescribed: {column}")
    finally:
        con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
