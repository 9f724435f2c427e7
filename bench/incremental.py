"""A new day of events: what a full run costs, and what the run the landing sensor starts costs.

    .venv/bin/python bench/incremental.py                      # the default demo: 2,000 people, 120 days
    .venv/bin/python bench/incremental.py --customers 500 --days 60

1. Generates the demo data set into a temporary data directory and holds its last `--new-days`
   (3) days of clickstream (one `events_<day>.jsonl` file each) back.
2. Full run: the whole graph (`tessera_all`) on the other days, timed.
3. Puts the held-back days in the landing folder one at a time; for each, asks
   `landing_files_sensor` what to run (as the deployed sensor would) and runs exactly that
   selection, timed. Three days, because a run of a few seconds varies by a second here.
4. Checks each new day is in intermediate.int_events and marts.fct_events (every usable event of
   the file, once); a fast but wrong run fails the bench.
5. Reports the full run, each new day's run and its ratio to the full run, the median ratio (the
   issue's target: <= 10 %), the raw/events load in each run (files read, records scanned,
   seconds), and the steps of the full run and of the last new day with their durations, so it
   is clear where the time goes.

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

from tessera.markdown import table  # noqa: E402

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
    parser.add_argument("--new-days", type=int, default=3, help="days delivered one at a time after the full run")
    args = parser.parse_args()

    import dagster as dg
    import duckdb

    from tessera.landing.generate import GenerateConfig, generate
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
    new_days = sorted(events_dir.iterdir())[-args.new_days :]
    for day in new_days:
        shutil.move(day, work / day.name)

    from orchestration.automation import landing_files_sensor
    from orchestration.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    os.environ["TESSERA_LANDING_SETTLE_SECONDS"] = "0"  # the files were written a moment ago
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    # the sensor's first tick sees every folder; its cursor is then the state the full run loaded
    tick = landing_files_sensor(dg.build_sensor_context(instance=instance, definitions=defs))

    started = time.perf_counter()
    full = defs.resolve_job_def("tessera_all").execute_in_process(
        instance=instance, run_config=quiet, raise_on_error=False
    )
    full_s = time.perf_counter() - started
    if not full.success:
        raise SystemExit("the full run failed")

    graph = defs.resolve_asset_graph()
    days = []
    for day in new_days:
        shutil.move(work / day.name, day)
        tick = landing_files_sensor(dg.build_sensor_context(instance=instance, cursor=tick.cursor, definitions=defs))
        [request] = tick.run_requests
        selection = [k for k in request.asset_selection if graph.get(k).is_executable]
        started = time.perf_counter()
        job = defs.resolve_job_def("tessera_all").get_subset(
            asset_selection=set(selection), asset_check_selection=set(request.asset_check_keys)
        )
        run = job.execute_in_process(instance=instance, run_config=quiet, raise_on_error=False)
        seconds = time.perf_counter() - started
        if not run.success:
            raise SystemExit(f"the incremental run for {day.name} failed")
        # a fast run is worth nothing unless it is right: the new day is in the facts, once
        with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
            usable, processed, in_facts = con.execute(
                """select
                    (select count(*) from staging.stg_events where _source_file = $f and invalid_reason is null),
                    (select count(*) from intermediate.int_events where _source_file = $f),
                    (select count(*) from marts.fct_events f join intermediate.int_events i using (event_id)
                     where i._source_file = $f)""",
                {"f": day.name},
            ).fetchone()
        if not (usable > 0 and usable == processed == in_facts):
            raise SystemExit(f"{day.name} is not processed right: {usable=} {processed=} {in_facts=}")
        days.append(
            {
                "new_file": day.name,
                "wall_s": round(seconds, 1),
                "ratio": round(seconds / full_s, 3),
                "assets": len(selection),
                "events_processed": processed,
                "events_load": events_load(run),
                "steps_s": step_seconds(instance, run),
            }
        )

    ratios = sorted(d["ratio"] for d in days)
    median = ratios[len(ratios) // 2]
    result = {
        "customers": args.customers,
        "days": args.days,
        "full_run_s": round(full_s, 1),
        "new_days": days,
        "median_ratio": median,
        "target_ratio": 0.10,
        "sensor_sources": request.tags["tessera/sources"],
        "events_load_full": events_load(full),
        "full_steps_s": step_seconds(instance, full),
        "cpus": os.cpu_count(),
    }
    out = ROOT / "bench" / "results" / f"incremental_{args.customers}x{args.days}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)

    def loaded(load: dict) -> tuple:
        return load["files_read"], f"{load['records_scanned']:,}", f"{load['seconds']:.2f}"

    runs = [("full (tessera_all)", f"{full_s:.1f}", "", *loaded(result["events_load_full"]))]
    runs += [
        (
            f"{d['new_file']} ({d['assets']} assets the sensor asks for)",
            f"{d['wall_s']:.1f}",
            f"{d['ratio']:.1%}",
            *loaded(d["events_load"]),
        )
        for d in days
    ]
    headers = ["run", "wall s", "/ full", "raw/events files read", "records scanned", "raw/events s"]
    print(table(runs, headers, ("left",) + ("right",) * 5))
    print("slowest steps of the full run:")
    for step, seconds in sorted(result["full_steps_s"].items(), key=lambda kv: -kv[1])[:6]:
        print(f"  {step:<60} {seconds:6.2f} s")
    print("each new day: every usable event processed once and in marts.fct_events")
    print(f"median incremental / full = {median:.1%} (target <= 10 %); steps of the last new day:")
    for step, seconds in sorted(days[-1]["steps_s"].items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {step:<60} {seconds:6.2f} s")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
