"""Issue 32's figures on a real shop export: map it, run the whole graph, and report what a shop
would check before trusting the numbers.

    .venv/bin/python bench/real_data.py --dataset online_retail
    .venv/bin/python bench/real_data.py --dataset complete_journey --sample-customers 500
    .venv/bin/python bench/real_data.py --dataset online_retail --reuse   # figures of the last run only

The export comes from ../shared/data (or $TESSERA_SHARED_DATA). The run lives in
data/bench/real/<dataset>[_<n>] (its own TESSERA_DATA_DIR and Dagster home), and the figures are
written to bench/results/real_data_<dataset>[_<n>].json:

- propensity: each target's out-of-time AUC beside the recency-only baseline's;
- RFM and rule segment sizes, one-time buyers and how many of them are Champions or Loyal;
- the recommender's promotion decisions, each with the warm users behind it and its reason;
- quarantined records by source and reason;
- feature snapshot rows whose customer was not known before the snapshot's cutoff;
- published products that are not goods (postage, fees, vouchers, adjustments);
- money: the source's signed line total against the warehouse's lines plus the quarantined ones.

The queries are the acceptance test's own (tests/test_real_data.py), so these figures and its
assertions cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

# the acceptance test's queries; importing them runs tests/conftest.py, which sets test-only
# defaults (a promotion minimum of 100 users among them): the bench keeps the environment it had
_ENVIRONMENT = dict(os.environ)
import tests.test_real_data as real  # noqa: E402

os.environ.clear()
os.environ.update(_ENVIRONMENT)

SEED = 42


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("online_retail", "complete_journey"), required=True)
    p.add_argument("--sample-customers", type=int, help="a seeded sample of this many customers (default: all)")
    p.add_argument("--data-dir", type=Path, help="default: data/bench/real/<dataset>[_<n>]")
    p.add_argument("--reuse", action="store_true", help="report on the existing run in --data-dir; map and run nothing")
    p.add_argument("--out", type=Path, help="default: bench/results/real_data_<dataset>[_<n>].json")
    return p.parse_args(argv)


def source_of(dataset: str, work: Path, sample: int | None) -> Path:
    """The export to map: the shared one, or a seeded sample of it written under `work`."""
    from tessera.landing.samples import sample_complete_journey, sample_online_retail

    full = real.SHARED / dataset / "online_retail.parquet" if dataset == "online_retail" else real.SHARED / dataset
    if not full.exists():
        raise SystemExit(f"no {dataset} export at {full} (set TESSERA_SHARED_DATA to the folder that holds it)")
    if sample is None:
        return full
    if dataset == "online_retail":
        return sample_online_retail(full, work / "source" / "online_retail.parquet", sample, SEED).path
    return sample_complete_journey(full, work / "source" / "complete_journey", sample, SEED).path


def map_and_run(dataset: str, source: Path, data_dir: Path) -> dict:
    """The mapping, then `tessera run` in a process of its own with this data directory."""
    dagster_home = data_dir.parent / f"{data_dir.name}_dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "TESSERA_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(dagster_home),
        "TESSERA_MODE": os.environ.get("TESSERA_MODE", "demo"),
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }
    cli = [sys.executable, "-m", "tessera.cli"]
    flag = ["online-retail", "--source"] if dataset == "online_retail" else ["complete-journey", "--source-dir"]
    subprocess.run([*cli, *flag, str(source)], env=env, cwd=ROOT, check=True)
    started = time.perf_counter()
    done = subprocess.run([*cli, "run"], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = round(time.perf_counter() - started, 1)
    summary = done.stdout[done.stdout.find("tessera run ") :]
    print(summary)
    return {"run_succeeded": done.returncode == 0, "run_seconds": seconds}


def figures(dataset: str, source: Path, data_dir: Path) -> dict:
    os.environ["TESSERA_DATA_DIR"] = str(data_dir)
    from tessera.settings import load_settings

    settings = load_settings()
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        snapshot_violations, examples = real.snapshot_rows_before_customer(con)
        not_goods = real.not_sellable_products(dataset, source)
        published = real.published_products(con)
        money = real.warehouse_money(con)
        source_total = real.source_line_total(dataset, source)
        return {
            "propensity": real.propensity_figures(settings),
            "rfm_segment_sizes": real.rfm_segment_sizes(con),
            "one_time_buyers": con.execute("select count(*) from marts.customer_rfm where frequency = 1").fetchone()[0],
            "one_time_buyers_in_top_rfm_segments": real.one_time_buyers_in_top_segments(con),
            "rule_segment_sizes": real.rule_segment_sizes(con),
            "promotion_decisions": real.promotion_decisions(settings),
            "promotion_min_users": settings.promotion_min_users,
            "quarantined_by_reason": {f"{s}: {r}": n for (s, r), n in real.quarantined_by_reason(con).items()},
            "snapshot_rows": con.execute("select count(*) from marts.customer_feature_snapshots").fetchone()[0],
            "snapshot_rows_before_their_customer": snapshot_violations,
            "snapshot_examples": [list(map(str, e)) for e in examples],
            "published_products": len(published),
            "published_products_that_are_not_goods": sorted(published & not_goods),
            "money": {
                "source_line_total": str(source_total),
                "usable_lines": str(money["usable_lines"]),
                "quarantined_lines": str(money["quarantined"]),
                "reconciles_to_the_cent": money["usable_lines"] + money["quarantined"] == source_total,
                "net_revenue_base": str(money["net_revenue_base"]),
                "not_sales_base": str(money["other_base"]),
            },
        }
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suffix = f"_{args.sample_customers}" if args.sample_customers else ""
    data_dir = (args.data_dir or ROOT / "data" / "bench" / "real" / f"{args.dataset}{suffix}").resolve()
    source = source_of(args.dataset, data_dir.parent / f"{data_dir.name}_work", args.sample_customers)
    out = {"dataset": args.dataset, "sample_customers": args.sample_customers, "source": source.name}
    if not args.reuse:
        out.update(map_and_run(args.dataset, source, data_dir))
    out.update(figures(args.dataset, source, data_dir))
    path = args.out or ROOT / "bench" / "results" / f"real_data_{args.dataset}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps(out, indent=2, default=str))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
