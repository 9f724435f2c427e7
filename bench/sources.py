"""Every built-in source mapping on its dataset, through the whole graph: what a new shop gets.

For each (mapping, export): the mapping's length, the time of `tessera sources map` and of
`tessera sources check`, the run's outcome (`tessera run` in a process of its own, own data
directory), and from the warehouse:

- export records = rows mapped into landing files + rows the mapping classified (left out,
  `_mapping/classified.parquet`) -- for mappings that aggregate (one product per code), the
  landing rows are counted per source instead;
- landed = loaded + quarantined: the landing files' records = rows the staging layer passes on +
  rows quarantined with a reason (quarantine.source_reconciliation), per source;
- customers (marts.dim_customers), person records and identity links (identity.identity_map:
  records merged into another record's customer), segments and recommendations published, and
  the popular-products list an anonymous shopper is shown.

    .venv/bin/python bench/sources.py [--only ga4,retailrocket] [--out bench/results/sources.json]

The exports are read from $TESSERA_SHARED_DATA (default ../shared/data) and tests/fixtures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TESSERA_SHARED_DATA", ROOT.parent / "shared" / "data"))

DATASETS = {
    "online_retail": ("online_retail", SHARED / "online_retail" / "online_retail.parquet"),
    "complete_journey": ("complete_journey", SHARED / "complete_journey"),
    "ga4": ("ga4", SHARED / "ga4_sample" / "ga4_events_sample.jsonl"),
    "retailrocket": ("retailrocket", SHARED / "retailrocket_sample" / "events_sample.csv"),
    "shopify": ("shopify", ROOT / "tests" / "fixtures" / "shopify"),
}


def _env(data_dir: Path) -> dict[str, str]:
    home = data_dir.parent / f"{data_dir.name}_dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {
        **os.environ,
        "TESSERA_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(home),
        "TESSERA_MODE": os.environ.get("TESSERA_MODE", "demo"),
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }


def _timed(cmd: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    return done, round(time.perf_counter() - started, 2)


def _count(con, sql: str) -> int | None:
    try:
        return con.execute(sql).fetchone()[0]
    except duckdb.Error:
        return None


def warehouse_figures(db: Path) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        reconciliation = {}
        try:
            rows = con.execute(
                "select source, landing_records, valid_rows, quarantined_at_load + quarantined_in_staging, "
                "erased_rows from quarantine.source_reconciliation order by source"
            ).fetchall()
        except duckdb.Error:
            rows = []
        for source, landed, valid, quarantined, erased in rows:
            if landed or valid or quarantined:
                reconciliation[source] = {
                    "landed": landed,
                    "loaded": valid,
                    "quarantined": quarantined,
                    "erased": erased,
                    "adds_up": landed == valid + quarantined + erased,
                }
        published = {}
        for table in ("customer_segments", "customer_recommendations", "customer_scores", "next_best_actions"):
            published[table] = _count(con, f'select count(*) from publish."{table}"')
        records = _count(con, "select count(*) from identity.identity_map")
        customers_in_map = _count(con, "select count(distinct customer_id) from identity.identity_map")
        return {
            "reconciliation": reconciliation,
            "customers": _count(con, "select count(*) from marts.dim_customers"),
            "person_records": records,
            "identity_links": None if records is None else records - (customers_in_map or 0),
            "published": published,
        }
    finally:
        con.close()


def measure(name: str, mapping: str, export: Path, work: Path) -> dict:
    data_dir = work / name
    shutil.rmtree(data_dir, ignore_errors=True)
    env = _env(data_dir)
    cli = [sys.executable, "-m", "tessera.cli"]
    mapping_file = ROOT / "config" / "mappings" / f"{mapping}.yml"
    result = {
        "mapping": mapping,
        "mapping_lines": sum(1 for line in mapping_file.read_text().splitlines() if line.strip()),
        "export": str(export.relative_to(SHARED) if export.is_relative_to(SHARED) else export.relative_to(ROOT)),
    }
    done, result["map_seconds"] = _timed([*cli, "sources", "map", mapping, str(export)], env)
    if done.returncode != 0:
        return {**result, "outcome": "mapping failed", "error": done.stderr[-2000:]}
    report = json.loads((data_dir / "landing" / "_mapping" / "report.json").read_text())
    result["export_records"] = sum(i["records"] for i in report["inputs"].values())
    result["landing_rows"] = {k: v["rows"] for k, v in report["outputs"].items()}
    result["classified_by_mapping"] = {k: v for k, v in report["classified"].items() if v}
    done, result["check_seconds"] = _timed([*cli, "sources", "check"], env)
    result["check"] = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    done, result["run_seconds"] = _timed([*cli, "run"], env)
    summary = done.stdout[done.stdout.find("tessera run ") :]
    result["outcome"] = "success" if done.returncode == 0 else "failed"
    result["run_summary_tail"] = summary.strip().splitlines()[-12:]
    if done.returncode != 0:
        result["error"] = (done.stderr or done.stdout)[-3000:]
    db = data_dir / "tessera.duckdb"
    if db.exists():
        result |= warehouse_figures(db)
    result["popular_products"] = popular_products(data_dir / "publish")
    return result


def popular_products(publish: Path) -> int | None:
    """Rows of the latest popular-products export (what an anonymous shopper is shown)."""
    versions = sorted((publish / "customer_recommendations" / "versions").glob("*/exports/popular_products.jsonl"))
    return sum(1 for line in versions[-1].read_text().splitlines() if line.strip()) if versions else None


def markdown(results: list[dict]) -> str:
    lines = [
        "| mapping | lines | export records | classified by mapping | map s | check s | run | run s "
        "| landed = loaded + quarantined | customers | identity links | segments | recommendations "
        "| popular products |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        rec = r.get("reconciliation", {})
        landed = sum(v["landed"] for v in rec.values())
        loaded = sum(v["loaded"] for v in rec.values())
        quarantined = sum(v["quarantined"] for v in rec.values())
        adds = all(v["adds_up"] for v in rec.values()) if rec else None
        classified = sum(sum(v.values()) for v in r.get("classified_by_mapping", {}).values())
        pub = r.get("published", {})
        lines.append(
            f"| {r['mapping']} | {r['mapping_lines']} | {r.get('export_records', '-'):,} | {classified:,} "
            f"| {r.get('map_seconds')} | {r.get('check_seconds')} | {r['outcome']} | {r.get('run_seconds')} "
            f"| {landed:,} = {loaded:,} + {quarantined:,}{'' if adds else ' (does not add up)'} "
            f"| {r.get('customers')} | {r.get('identity_links')} | {pub.get('customer_segments')} "
            f"| {pub.get('customer_recommendations')} | {r.get('popular_products')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated dataset names (default: all)")
    p.add_argument("--work", type=Path, default=ROOT / "data" / "bench" / "sources")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sources.json")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(DATASETS)
    results = []
    for name in names:
        mapping, export = DATASETS[name]
        if not export.exists():
            print(f"{name}: no export at {export}, skipped", file=sys.stderr)
            continue
        print(f"{name}: mapping, check and run ...", flush=True)
        results.append(measure(name, mapping, export, args.work))
        print(json.dumps(results[-1], indent=1, default=str)[:3000], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
