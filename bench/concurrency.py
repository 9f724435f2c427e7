"""Overlapping runs on one DuckDB file: do they ever fail on its lock?

    .venv/bin/python bench/concurrency.py                                  # 4 runs, sources + gates
    .venv/bin/python bench/concurrency.py --runs 4 --executor multiprocess --select raw/products

Sets up an isolated data directory (small generated landing data) and Dagster instance
(dagster.yaml: concurrency.pools.default_limit 1, as `make dagster-home` writes it), initialises
the instance once, then starts `--runs` OS processes at the same moment, each materialising the
same selection (default: every raw source with its blocking Great Expectations gate) on the same
DuckDB file, with the in-process executor tessera configures or Dagster's multiprocess one.

Reported: runs that succeeded, lock errors (DuckDB's "Could not set lock" / "Conflicting lock"
outside tessera's wait warning: a step that failed on the lock), lock waits (tessera.db.connect's
warning: a step met the file locked and waited for it), wall time, and whether every raw table
holds exactly its landing rows afterwards (no run duplicated or lost rows). Exit status 1 if any
run failed or met a lock error. Results go to bench/results/concurrency_<executor>_<runs>.json.

Waits are rare but not impossible: on the SQLite storage a local Dagster instance uses, claiming
a pool slot is a read followed by a write without a row lock (dagster's
SqlEventLogStorage._claim_concurrency_slot; Postgres storage locks the row), so two runs starting
in the same few milliseconds can both get the one slot. The second step then waits on DuckDB's
own lock (tessera.db.connect) instead of failing; in our runs this happened to at most one step
in a batch, only while runs were starting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAGSTER_YAML = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
# the control: no pool limit, no lock wait; shows what the pool prevents
UNLIMITED_YAML = "telemetry:\n  enabled: false\n"
LOCK_ERRORS = ("Could not set lock on file", "Conflicting lock is held")
LOCK_WAIT = "is locked by another process"

WORKER = """
import sys
import dagster as dg
from orchestration.definitions import defs

selection = [dg.AssetKey.from_user_string(s) for s in sys.argv[1].split(",")]
result = defs.resolve_job_def("tessera_all").execute_in_process(
    instance=dg.DagsterInstance.get(), raise_on_error=False, asset_selection=selection
)
print("TESSERA_RUN_SUCCESS" if result.success else "TESSERA_RUN_FAILURE", flush=True)
raise SystemExit(0 if result.success else 1)
"""


def environment(data_dir: Path, home: Path) -> dict[str, str]:
    from tessera.settings import DERIVED_LOCATION_VARS

    env = {k: v for k, v in os.environ.items() if k not in DERIVED_LOCATION_VARS}
    env.update(
        TESSERA_DATA_DIR=str(data_dir),
        DAGSTER_HOME=str(home),
        DO_NOT_TRACK="1",
        GX_ANALYTICS_ENABLED="false",
        PYTHONPATH=str(ROOT),
    )
    return env


def run_command(executor: str, selection: list[str]) -> list[str]:
    if executor == "inprocess":
        return [sys.executable, "-c", WORKER, ",".join(selection), executor]
    # Dagster's default executor: the CLI's implicit asset job over bench/multiprocess_definitions.py
    # (tessera's Definitions with the multiprocess executor)
    return [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "bench.multiprocess_definitions",
        "--select",
        ",".join(selection),
    ]


def overlapping_runs(
    runs: int, executor: str, selection: list[str] | None, customers: int, workdir: Path, control: bool = False
) -> dict:
    from tessera.landing.contract import SOURCES
    from tessera.landing.generate import GenerateConfig, generate

    data_dir, home = workdir / "data", workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(UNLIMITED_YAML if control else DAGSTER_YAML)
    env = environment(data_dir, home)
    if control:
        env["TESSERA_DUCKDB_LOCK_WAIT_SECONDS"] = "0"
    generate(GenerateConfig(customers=customers, days=30, seed=7), data_dir / "landing", data_dir / "truth")
    # one process initialises the instance's storage: several creating it at once race in SQLite
    subprocess.run([sys.executable, "-m", "dagster", "instance", "migrate"], env=env, check=True, capture_output=True)
    selection = selection or [f"raw/{s.name}" for s in SOURCES]

    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            run_command(executor, selection),
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(runs)
    ]
    outputs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - started

    succeeded = sum(
        1
        for p, out in zip(procs, outputs, strict=False)
        if p.returncode == 0 and ("TESSERA_RUN_SUCCESS" in out or "RUN_SUCCESS" in out)
    )
    lines = [line for out in outputs for line in out.splitlines()]
    lock_waits = sum(1 for line in lines if LOCK_WAIT in line)
    lock_errors = sum(1 for line in lines if LOCK_WAIT not in line and any(m in line for m in LOCK_ERRORS))
    reconciled = reconcile(data_dir, [s for s in SOURCES if f"raw/{s.name}" in selection])
    return {
        "control_without_pool": control,
        "runs": runs,
        "executor": executor,
        "selection": selection,
        "succeeded": succeeded,
        "lock_errors": lock_errors,
        "lock_waits": lock_waits,
        "wall_s": round(wall, 1),
        "raw_rows_equal_landing_rows": reconciled,
        "failed_output_tails": [out[-3000:] for p, out in zip(procs, outputs, strict=False) if p.returncode != 0],
    }


def reconcile(data_dir: Path, sources) -> dict[str, bool]:
    """Each raw table holds exactly the rows of its landing files: no run duplicated or lost any."""
    import duckdb

    from tessera.db import table_exists
    from tessera.landing.loader import landing_files

    con = duckdb.connect(str(data_dir / "tessera.duckdb"), read_only=True)
    try:
        out = {}
        for source in sources:
            files = landing_files(data_dir / "landing" / source.name)
            landing = 0
            for path in files:
                if path.suffix == ".csv":
                    landing += con.execute(
                        "select count(*) from read_csv(?, all_varchar = true)", [str(path)]
                    ).fetchall()[0][0]
                elif path.suffix == ".parquet":
                    landing += con.execute("select count(*) from read_parquet(?)", [str(path)]).fetchall()[0][0]
                else:
                    landing += con.execute("select count(*) from read_ndjson_objects(?)", [str(path)]).fetchall()[0][0]
            if not table_exists(con, "raw", source.name):
                out[source.name] = False  # no run managed to load it
                continue
            loaded = con.execute(f"select count(*) from {source.raw_table}").fetchall()[0][0]
            out[source.name] = landing == loaded
        return out
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--executor", choices=["inprocess", "multiprocess"], default="inprocess")
    parser.add_argument("--select", help="comma-separated asset keys (default: every raw source)")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument(
        "--control", action="store_true", help="no pool limit and no lock wait: what happens without them"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tessera-concurrency-") as tmp:
        result = overlapping_runs(
            args.runs,
            args.executor,
            args.select.split(",") if args.select else None,
            args.customers,
            Path(tmp),
            args.control,
        )
    name = f"concurrency_{args.executor}_{args.runs}{'_control' if args.control else ''}.json"
    out = ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"{result['succeeded']}/{result['runs']} runs succeeded ({args.executor} executor), "
        f"{result['lock_errors']} lock errors, {result['lock_waits']} lock waits, {result['wall_s']} s; "
        f"raw rows = landing rows: {result['raw_rows_equal_landing_rows']}"
    )
    for tail in result["failed_output_tails"][:1]:
        print(tail[-1500:])
    ok = (
        result["succeeded"] == result["runs"]
        and not result["lock_errors"]
        and all(result["raw_rows_equal_landing_rows"].values())
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
