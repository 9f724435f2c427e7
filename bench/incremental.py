"""A new day of events: what a full run costs, and what the run the landing sensor starts costs.

    .venv/bin/python bench/incremental.py                      # the default demo: 2,000 people, 120 days
    .venv/bin/python bench/incremental.py --customers 500 --days 60

1. Generates the demo data set into a temporary data directory and holds its last day of
   clickstream (one `events_<day>.jsonl` file) back.
2. Full run: the whole graph (`tessera_all`) on the other days, timed.
3. Puts the last day's file in the landing folder, asks `landing_files_sensor` what to run (as
   the deployed sensor would), and runs exactly that selection, timed.
4. Checks the new day is in intermediate.int_events and marts.fct_events (every usable event of
   the file, once); a fast but wrong run fails the bench.
5. Reports both wall times, their ratio (the issue's target: <= 10 %), the raw/events load in
   each run (files read, records scanned, seconds), and the steps of both runs with their
   durations, so it is clear where the time goes.

Results go to bench/results/incremental_<customers>x<days>.json and are printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def step_seconds(instance, result) -> dict[str, float]:
    started, out = {}, {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started:
            out[event.step_key] = round(entry.timestamp - started[event.step_key], 2)
    return out


def events_load(result) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == "raw/events":
            m = event.materialization.metadata
            return {
                "files_read": len(m["files_read"].value),
                "files_unchanged": m["files_unchanged"].value,
                "records_scanned": m["rows_processed"].value,
                "seconds": m["duration_seconds"].value,
            }
    return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import dagster as dg

    from tessera.generate import GenerateConfig, generate
    from tessera.settings import DERIVED_LOCATION_VARS, load_settings

    work = Path(tempfile.mkdtemp(prefix="tessera_incremental_"))
    os.environ["TESSERA_DATA_DIR"] = str(work / "data")
    for name in DERIVED_LOCATION_VARS:
        os.environ.pop(name, None)
    settings = load_settings()
    generate(
        GenerateConfig(customers=args.customers, days=args.days, seed=args.seed, end_date=date(2026, 10, 31)),
        settings.landing_dir,
        settings.truth_dir,
    )
    events_dir = settings.landing_dir / "events"
    last_day = sorted(events_dir.iterdir())[-1]
    held = work / last_day.name
    shutil.move(last_day, held)

    from orchestration.automation import landing_files_sensor
    from orchestration.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    os.environ["TESSERA_LANDING_SETTLE_SECONDS"] = "0"  # the files were written a moment ago
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    # the sensor's first tick sees every folder; its cursor is then the state the full run loaded
    first_tick = landing_files_sensor(dg.build_sensor_context(instance=instance, definitions=defs))

    started = time.perf_counter()
    full = defs.resolve_job_def("tessera_all").execute_in_process(instance=instance, run_config=quiet, raise_on_error=False)
    full_s = time.perf_counter() - started
    if not full.success:
        raise SystemExit("the full run failed")

    shutil.move(held, last_day)
    tick = landing_files_sensor(dg.build_sensor_context(instance=instance, cursor=first_tick.cursor, definitions=defs))
    [request] = tick.run_requests
    graph = defs.resolve_asset_graph()
    selection = [k for k in request.asset_selection if graph.get(k).is_executable]
    started = time.perf_counter()
    job = defs.resolve_job_def("tessera_all").get_subset(
        asset_selection=set(selection), asset_check_selection=set(request.asset_check_keys)
    )
    incremental = job.execute_in_process(instance=instance, run_config=quiet, raise_on_error=False)
    incremental_s = time.perf_counter() - started
    if not incremental.success:
        raise SystemExit("the incremental run failed")
    # a fast run is worth nothing unless it is right: the new day is in the facts, once
    import duckdb

    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        usable, processed, in_facts = con.execute(
            """select
                (select count(*) from staging.stg_events where _source_file = $f and invalid_reason is null),
                (select count(*) from intermediate.int_events where _source_file = $f),
                (select count(*) from marts.fct_events f join intermediate.int_events i using (event_id)
                 where i._source_file = $f)""",
            {"f": last_day.name},
        ).fetchone()
    if not (usable > 0 and usable == processed == in_facts):
        raise SystemExit(f"the new day is not processed right: {usable=} {processed=} {in_facts=}")

    result = {
        "customers": args.customers,
        "days": args.days,
        "new_file": last_day.name,
        "full_run_s": round(full_s, 1),
        "incremental_run_s": round(incremental_s, 1),
        "ratio": round(incremental_s / full_s, 3),
        "target_ratio": 0.10,
        "sensor_sources": request.tags["tessera/sources"],
        "assets_in_incremental_run": len(selection),
        "events_load_full": events_load(full),
        "events_load_incremental": events_load(incremental),
        "new_day_events_processed": processed,
        "full_steps_s": step_seconds(instance, full),
        "incremental_steps_s": step_seconds(instance, incremental),
        "cpus": os.cpu_count(),
    }
    out = ROOT / "bench" / "results" / f"incremental_{args.customers}x{args.days}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print("| run | wall s | raw/events files read | records scanned | raw/events s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds, load in (
        ("full (tessera_all)", full_s, result["events_load_full"]),
        (f"new day ({len(selection)} assets the sensor asks for)", incremental_s, result["events_load_incremental"]),
    ):
        print(f"| {name} | {seconds:.1f} | {load['files_read']} | {load['records_scanned']:,} | {load['seconds']:.2f} |")
    print("slowest steps of the full run:")
    for step, seconds in sorted(result["full_steps_s"].items(), key=lambda kv: -kv[1])[:6]:
        print(f"  {step:<60} {seconds:6.2f} s")
    print(f"new day: {processed:,} usable events processed, all of them in marts.fct_events")
    print(f"incremental / full = {result['ratio']:.1%} (target <= 10 %); slowest steps of the incremental run:")
    for step, seconds in sorted(result["incremental_steps_s"].items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {step:<60} {seconds:6.2f} s")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
