"""Features, segments and scores benchmark: the real Dagster assets on N customers.

    .venv/bin/python bench/segments_bench.py                       # 1,000,000 customers
    .venv/bin/python bench/segments_bench.py --customers 100000

How the N customers are made, and why:
1. seed: the demo generator writes `--seed-customers` people (default 10,000, 120 days) and the
   pipeline runs up to the marts (sources, quality gates, staging, identity, dbt marts), with no
   ML or publishing. The generator holds everything in memory, so it cannot write 1M customers on
   this machine (issue 9 makes it stream).
2. scale-up: the marts the feature models read (dim_customers, dim_products, fct_orders,
   fct_order_items, fct_events, the email identities and email events) are copied
   N / seed-customers times into a fresh DuckDB file, each copy with its own customer, order,
   session and email keys. Distributions per customer are the generator's; customers are copies.
3. timed: one in-process Dagster run over that file materializes exactly the assets that make
   features, segments and scores: the dbt models customer_feature_snapshots, customer_features,
   customer_rfm, customer_propensity_labels and customer_rule_segments (with their dbt tests),
   ml/customer_clusters, ml/propensity_scores (both tracked in MLflow) and the published
   customer_segments, customer_scores and segment history (with their blocking checks).

Reported: wall time of the timed run, per-step times from the Dagster event log, peak RSS of the
timed run's process and of its dbt subprocesses (the seed and scale-up run in a process of their
own), row counts and model metrics. Results go to
bench/results/segments_<customers>.json and are printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tessera.markdown import table  # noqa: E402

# the marts and staging relations the timed models read, and the key columns each copy renames
SCALED_TABLES = {
    "marts.dim_customers": ["customer_key"],
    "marts.fct_orders": ["customer_key", "order_id"],
    "marts.fct_order_items": ["customer_key", "order_id"],
    "marts.fct_events": ["customer_key", "session_id", "event_id", "anonymous_id"],
    "intermediate.int_identities_resolved": ["customer_key", "node_value", "node_key"],
    "staging.stg_email_events": ["email"],
}
COPIED_TABLES = ["marts.dim_products", "reference.rfm_segment_map"]
TIMED_MODELS = [
    "customer_feature_snapshots",
    "customer_features",
    "customer_rfm",
    "customer_propensity_labels",
    "customer_rule_segments",
]


def _use_data_dir(path: Path) -> None:
    """Every tessera setting follows TESSERA_DATA_DIR; clear the ones that could point elsewhere."""
    from tessera.settings import DERIVED_LOCATION_VARS

    for name in DERIVED_LOCATION_VARS:
        os.environ.pop(name, None)
    os.environ["TESSERA_DATA_DIR"] = str(path)


def build_seed(seed_dir: Path, customers: int, seed: int) -> None:
    import dagster as dg

    from tessera.landing.generate import GenerateConfig, generate
    from tessera.settings import load_settings

    _use_data_dir(seed_dir)
    settings = load_settings()
    settings.ensure_dirs()
    generate(
        GenerateConfig(customers=customers, days=120, seed=seed, end_date=date(2026, 10, 31)),
        settings.landing_dir,
        settings.truth_dir,
    )
    from orchestration.definitions import defs

    selection = dg.AssetSelection.groups("ml", "publish").upstream() - dg.AssetSelection.groups("ml", "publish")
    job = dg.define_asset_job("bench_seed", selection=selection)
    seed_defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    result = seed_defs.resolve_job_def("bench_seed").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    if not result.success:
        raise SystemExit(f"seed pipeline failed (run {result.run_id}); see the log above")


def scale_up(seed_db: Path, target_dir: Path, copies: int) -> dict[str, int]:
    import duckdb

    target_dir.mkdir(parents=True, exist_ok=True)
    target_db = target_dir / "tessera.duckdb"
    for stale in (target_db, target_db.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    con = duckdb.connect(
        str(target_db),
        config={"memory_limit": os.environ.get("TESSERA_DUCKDB_MEMORY_LIMIT", "4GB")},
    )
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"attach '{seed_db}' as seed (read_only)")
        rows = {}
        for table in COPIED_TABLES:
            schema = table.split(".")[0]
            con.execute(f"create schema if not exists {schema}")
            con.execute(f"create table {table} as select * from seed.{table}")
        for table, keys in SCALED_TABLES.items():
            schema = table.split(".")[0]
            con.execute(f"create schema if not exists {schema}")
            # copy 0 keeps the seed's keys; copy r appends '~r'. Emails get a prefix so that they
            # stay well-formed addresses.
            renamed = ", ".join(
                f"case when r.i = 0 then {k} else 'c' || r.i || '.' || {k} end as {k}"
                if k in ("email", "node_value")
                else f"case when r.i = 0 then {k} else {k} || '~' || r.i end as {k}"
                for k in keys
            )
            con.execute(
                f"create table {table} as "
                f"select * replace ({renamed}) from seed.{table} as s cross join range({copies}) as r(i) "
                f"order by r.i"
            )
            rows[table] = con.execute(f"select count(*) from {table}").fetchall()[0][0]
        # the copied views and tables the dbt project would otherwise think exist elsewhere
        con.execute("detach seed")
        con.execute("checkpoint")
        return rows
    finally:
        con.close()


def run_timed(target_dir: Path) -> dict:
    import dagster as dg

    _use_data_dir(target_dir)
    from orchestration.dbt import model_key
    from orchestration.definitions import defs
    from orchestration.ml import CLUSTERS_KEY, PROPENSITY_KEY

    keys = [model_key(m) for m in TIMED_MODELS] + [CLUSTERS_KEY, PROPENSITY_KEY]
    publish = dg.AssetSelection.assets(
        dg.AssetKey(["publish", "customer_segments"]),
        dg.AssetKey(["publish", "customer_scores"]),
    )
    selection = dg.AssetSelection.assets(*keys) | publish
    job = dg.define_asset_job("bench_segments", selection=selection)
    bench_defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    result = bench_defs.resolve_job_def("bench_segments").execute_in_process(instance=instance, raise_on_error=False)
    wall = time.perf_counter() - started
    steps: dict[str, float] = {}
    starts: dict[str, float] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
            steps[event.step_key] = round(entry.timestamp - starts[event.step_key], 1)
    checks = result.get_asset_check_evaluations()
    return {
        "success": result.success,
        "run_id": result.run_id,
        "wall_seconds": round(wall, 1),
        "steps_seconds": steps,
        "checks_passed": sum(c.passed for c in checks),
        "checks_failed": [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed],
    }


def outputs(target_dir: Path) -> dict:
    import duckdb

    _use_data_dir(target_dir)
    con = duckdb.connect(str(target_dir / "tessera.duckdb"), read_only=True)
    try:
        counts = {
            t: con.execute(f"select count(*) from {t}").fetchall()[0][0]
            for t in (
                "marts.customer_features",
                "marts.customer_rule_segments",
                "ml.customer_clusters",
                "ml.propensity_scores",
                "publish.customer_segments",
                "publish.customer_scores",
            )
        }
        runs = con.execute(
            "select min(purchase_propensity_30d_run_id), min(churn_risk_30d_run_id) from ml.propensity_scores"
        ).fetchall()[0]
        clusters = con.execute("select cluster_id, count(*) from ml.customer_clusters group by 1 order by 1").fetchall()
    finally:
        con.close()
    import mlflow

    from tessera.settings import load_settings

    mlflow.set_tracking_uri(load_settings().mlflow_tracking_uri)
    client = mlflow.tracking.MlflowClient()
    metrics = {}
    for label, run_id in zip(("purchase", "churn"), runs, strict=False):
        m = client.get_run(run_id).data.metrics
        metrics[label] = {k: round(m[k], 4) for k in ("auc", "baseline_recency_auc", "pr_auc", "brier", "train_rows")}
    return {"rows": counts, "cluster_sizes": dict(clusters), "propensity": metrics}


PHASE_MARK = "BENCH-PHASE-RESULT "


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed-customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "data" / "bench" / "segments")
    parser.add_argument(
        "--reuse-seed",
        action="store_true",
        help="keep an existing seed run in the work dir",
    )
    parser.add_argument(
        "--phase",
        choices=["all", "prepare", "timed"],
        default="all",
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()

    def _run_phase(phase: str) -> dict:
        argv = [a for a in sys.argv[1:] if not a.startswith("--phase")]
        done = subprocess.run(
            [sys.executable, __file__, *argv, "--phase", phase],
            stdout=subprocess.PIPE,
            text=True,
        )
        marked = [line for line in done.stdout.splitlines() if line.startswith(PHASE_MARK)]
        if done.returncode != 0 or not marked:
            sys.stdout.write(done.stdout)
            raise SystemExit(f"bench phase '{phase}' failed (exit {done.returncode})")
        return json.loads(marked[-1][len(PHASE_MARK) :])

    if args.customers % args.seed_customers:
        parser.error("--customers must be a multiple of --seed-customers")
    seed_dir = args.work_dir / f"seed_{args.seed_customers}_{args.seed}"
    target_dir = args.work_dir / f"scaled_{args.customers}"
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

    if args.phase == "prepare":
        t0 = time.perf_counter()
        if not (args.reuse_seed and (seed_dir / "tessera.duckdb").exists()):
            build_seed(seed_dir, args.seed_customers, args.seed)
        seed_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = scale_up(
            seed_dir / "tessera.duckdb",
            target_dir,
            args.customers // args.seed_customers,
        )
        print(
            PHASE_MARK
            + json.dumps(
                {
                    "input_rows": rows,
                    "seed_seconds": round(seed_seconds, 1),
                    "scale_up_seconds": round(time.perf_counter() - t0, 1),
                }
            )
        )
        return 0
    if args.phase == "timed":
        timed = run_timed(target_dir)
        timed["peak_rss_mb_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        timed["peak_rss_mb_children"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        print(PHASE_MARK + json.dumps(timed))
        return 0

    # each phase in its own process, so the peak memory reported is the timed run's alone
    prepared = _run_phase("prepare")
    timed = _run_phase("timed")
    report = {
        "customers": args.customers,
        "seed_customers": args.seed_customers,
        "copies": args.customers // args.seed_customers,
        **prepared,
        **timed,
        "cpus": os.cpu_count(),
        "duckdb_memory_limit": os.environ.get("TESSERA_DUCKDB_MEMORY_LIMIT", "4GB"),
    }
    scaled_rows = prepared["input_rows"]
    if timed["success"]:
        report.update(outputs(target_dir))
    out = ROOT / "bench" / "results" / f"segments_{args.customers}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))

    print(
        f"\n## Features, segments and scores: {args.customers:,} customers ({report['copies']} copies of {args.seed_customers:,})\n"
    )
    print(table([(t, f"{n:,}") for t, n in scaled_rows.items()], ["input", "rows"], ("left", "right")))
    print(
        f"\n**timed run: {timed['wall_seconds']} s wall, {'SUCCESS' if timed['success'] else 'FAILED'}**; "
        f"peak RSS {report['peak_rss_mb_self']} MB (timed run's process), {report['peak_rss_mb_children']} MB (its dbt processes)\n"
    )
    print(table(sorted(timed["steps_seconds"].items(), key=lambda kv: -kv[1]), ["step", "seconds"], ("left", "right")))
    print(f"\nchecks: {timed['checks_passed']} passed, failed: {timed['checks_failed'] or 'none'}")
    if timed["success"]:
        print(f"outputs: {report['rows']}")
        print(f"propensity: {report['propensity']}")
        print(f"clusters: {report['cluster_sizes']}")
    print(f"(untimed: seed {report['seed_seconds']} s, scale-up {report['scale_up_seconds']} s) -> {out}")
    return 0 if timed["success"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
