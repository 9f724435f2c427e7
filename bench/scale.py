"""How the whole pipeline's cost grows with the data: `make bench SIZE=10k|100k|1m`.

    .venv/bin/python bench/scale.py --size 100k
    .venv/bin/python bench/scale.py --size 1m --reuse-landing     # keep the generated files of a prior run
    .venv/bin/python bench/scale.py --summary                     # only recompute bench/results/scale.md

1. Generates the demo data at that size into `TESSERA_BENCH_DIR` (default data/bench/scale/<size>):
   customers = 10,000 / 100,000 / 1,000,000 over `--days` (120) days at 0.4 of the demo's web
   sessions (about 30 clickstream events per customer), products = customers / 8 (at most 50,000).
   Above 100,000 customers the generator runs in
   shards of 100,000 people (tessera/landing/generate.py `shard`), one process each, so memory stays that of
   one shard. Generation is timed but is not part of the pipeline's figures.
2. Materialises the whole graph (`tessera run`, job `tessera_all`, in-process executor) on a fresh
   warehouse, in a child process. A sampler polls the child's process tree every 0.2 s (psutil):
   resident memory (sum over the tree) and CPU time (user + system, finished children included).
   The Dagster event log gives each step's start and end, so every step gets its wall time, CPU
   time and peak RSS; the materialisations give rows out (`dagster/row_count`, else the table's
   count in DuckDB) and rows in (the rows out of the asset's upstream assets). dbt runs many models
   in one step; its models' own durations come from the step's materialisations.
3. Side by side, in the same run, on the same warehouse:
   - plain dbt: `dbt build --full-refresh` of the same project, outside Dagster. The orchestration
     overhead is the Dagster dbt steps' wall time over the plain build's.
   - the DuckDB floor: one SQL statement that reads every landing file and aggregates it (rows,
     distinct ids, sums). Pipeline wall time over floor wall time says how far from the machine's
     limit the pipeline is.
4. Writes bench/results/scale_<size>.json and .md, and bench/results/scale.md: every size measured so
   far, and the scaling exponent b of cost = a * size^b between consecutive sizes (wall and CPU time,
   whole pipeline and per step): b <= 1.1 from 100k to 1m is the target.

`--next-day` measures the daily refresh instead (issue 37): the last day of clickstream (every
shard's `events_<day>*.jsonl`) is held back, the whole graph runs on the rest (run 1, a fresh
warehouse: the recommender trains), then the held-back files land and the graph runs again on
the same warehouse, as the next night's schedule would (run 2: within the default retraining
cadence the recommender scores with its champion). No plain dbt build or floor. Both runs, their
steps and the recommender's own account (refresh kind, reason, seconds by phase) go to
bench/results/scale_<size>_next_day.json and .md.

The warehouse runs with the same settings a deployment would: TESSERA_DUCKDB_MEMORY_LIMIT,
TESSERA_DUCKDB_THREADS and TESSERA_DUCKDB_TEMP_DIR (spill directory) are passed through.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"  # --results-dir overrides (the smoke test writes elsewhere)

SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
SHARD_CUSTOMERS = 100_000
# 120 days (the propensity model trains on features 60 days back with 30-day labels) at 0.4 of the
# demo's web sessions: about 30 clickstream events per customer
DAYS = 120
SESSION_SCALE = 0.4
SAMPLE_SECONDS = 0.2


# ----------------------------------------------------------------------------------------------
# progress: one line per phase, and per finished step of a measured run, with the elapsed time

BENCH_STARTED = time.time()
QUIET = False  # --quiet: only the results
WATCH_SECONDS = 2.0  # how often the step watcher reads the run's event log
HEARTBEAT_SECONDS = 30.0  # a line about the running steps when none has finished for this long


def say(message: str) -> None:
    """A progress line on stdout: seconds since the bench started, then the message."""
    if not QUIET:
        print(f"[{time.time() - BENCH_STARTED:6.0f} s] {message}", flush=True)


class StepWatcher(threading.Thread):
    """Reads the event log of the run a child `tessera run` writes under `dagster_home` (its
    per-run SQLite file, read-only) and says each step as it ends, and every HEARTBEAT_SECONDS
    which steps are still running. Only step names and times: nothing the steps read."""

    STEP_EVENTS = ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED")

    def __init__(self, dagster_home: Path, since: float):
        super().__init__(daemon=True)
        self.runs, self.since = dagster_home / "history" / "runs", since
        self._halt = threading.Event()  # not _stop: threading.Thread has a method of that name
        self.last_id, self.running, self.finished, self.skipped = 0, {}, 0, 0
        self.last_said = time.time()

    def _log(self) -> Path | None:
        if not self.runs.is_dir():
            return None
        logs = [p for p in self.runs.glob("*.db") if p.name != "index.db" and p.stat().st_mtime >= self.since]
        return max(logs, key=lambda p: p.stat().st_mtime, default=None)

    def poll(self) -> None:
        import sqlite3

        log = self._log()
        if log is None:
            return
        try:
            con = sqlite3.connect(f"file:{log}?mode=ro", uri=True, timeout=1)
            try:
                rows = con.execute(
                    "select id, step_key, dagster_event_type, timestamp from event_logs where id > ? "
                    "and dagster_event_type "
                    f"in ({', '.join('?' * len(self.STEP_EVENTS))}) order by id",
                    [self.last_id, *self.STEP_EVENTS],
                ).fetchall()
            finally:
                con.close()
        except sqlite3.Error:  # the run is creating its tables, or holds a write lock: next poll
            return
        for event_id, step, kind, stamp in rows:
            self.last_id = event_id
            at = datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()  # the event log's UTC time
            if kind == "STEP_START":
                self.running[step] = at
            elif kind == "STEP_SKIPPED":
                self.skipped += 1
            else:
                self.finished += 1
                began = self.running.pop(step, None)
                took = f" in {at - began:.1f} s" if began is not None else ""
                result = "done" if kind == "STEP_SUCCESS" else "FAILED"
                say(f"  step {step} {result}{took} ({self.finished} steps ended, {self.skipped} skipped)")
                self.last_said = time.time()
        if self.running and time.time() - self.last_said >= HEARTBEAT_SECONDS:
            now = time.time()
            say("  running: " + ", ".join(f"{s} ({now - t:.0f} s)" for s, t in self.running.items()))
            self.last_said = now

    def run(self) -> None:
        while not self._halt.wait(WATCH_SECONDS):
            self.poll()

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.poll()  # the steps that ended since the last poll


# ----------------------------------------------------------------------------------------------
# measuring a process tree


class TreeSampler(threading.Thread):
    """Polls a process and its descendants: (time, rss bytes summed over the tree, cpu seconds)."""

    def __init__(self, pid: int, every: float = SAMPLE_SECONDS):
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.every = every
        self.samples: list[tuple[float, int, float]] = []
        self._halt = threading.Event()

    def sample(self) -> tuple[float, int, float] | None:
        import psutil

        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return None
        rss, cpu = 0, 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                rss += p.memory_info().rss
                # children_*: descendants that finished and were reaped, so dbt's CPU is not lost
                cpu += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                continue
        return time.time(), rss, cpu

    def run(self) -> None:
        while not self._halt.is_set():
            s = self.sample()
            if s is None:
                break
            self.samples.append(s)
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def window(self, start: float, end: float) -> tuple[float | None, int | None]:
        """CPU seconds spent and peak RSS between two instants (nearest samples)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        before = [s for s in self.samples if s[0] <= start]
        after = [s for s in self.samples if s[0] >= end]
        first = before[-1] if before else (inside[0] if inside else None)
        last = after[0] if after else (inside[-1] if inside else None)
        cpu = None if first is None or last is None else max(0.0, last[2] - first[2])
        peaks = [s[1] for s in inside] + ([first[1]] if first else []) + ([last[1]] if last else [])
        return cpu, (max(peaks) if peaks else None)


def run_measured(cmd: list[str], env: dict, log: Path, dagster_home: Path | None = None) -> dict:
    """Run a command to the end under a TreeSampler; wall, CPU and peak RSS of the whole tree.
    With `dagster_home` (a `tessera run`), each step is said as it ends (StepWatcher)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    watcher = StepWatcher(dagster_home, started) if dagster_home is not None and not QUIET else None
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        if watcher is not None:
            watcher.start()
        code = proc.wait()
    ended = time.time()
    sampler.stop()
    if watcher is not None:
        watcher.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "exit_code": code,
        "started": started,
        "ended": ended,
        "wall_s": round(ended - started, 2),
        # rusage of reaped children: exact CPU of the whole tree once it has ended
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
        # ru_maxrss: the largest single process (KiB on Linux); the sampled tree sum can be larger
        "max_process_rss_gb": round(after.ru_maxrss / 1024**2, 2),
        "peak_tree_rss_gb": round(max((s[1] for s in sampler.samples), default=0) / 1024**3, 2),
        "sampler": sampler,
        "log": str(log),
    }


# ----------------------------------------------------------------------------------------------
# the data set


def bench_env(work: Path) -> dict:
    env = dict(os.environ)
    env.update(
        TESSERA_DATA_DIR=str(work / "data"),
        DAGSTER_HOME=str(work / "dagster_home"),
        TESSERA_MODE=env.get("TESSERA_MODE", "demo"),
        DO_NOT_TRACK="1",
        GX_ANALYTICS_ENABLED="false",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        TESSERA_LOG_LEVEL=env.get("TESSERA_LOG_LEVEL", "WARNING"),
    )
    for derived in ("TESSERA_DUCKDB_PATH", "TESSERA_LANDING_DIR", "TESSERA_PUBLISH_DIR", "MLFLOW_TRACKING_URI"):
        env.pop(derived, None)  # everything lives under the bench's data directory
    return env


def generate(customers: int, days: int, seed: int, env: dict, work: Path) -> dict:
    products = int(min(max(customers // 8, 60), 50_000))
    shards = max(1, math.ceil(customers / SHARD_CUSTOMERS))
    per_shard = customers // shards
    started = time.time()
    for shard in range(shards):
        # `tessera generate`, one process per shard: its memory is returned before the next one
        args = ["--shard", shard, "--customers", per_shard, "--products", products, "--days", days, "--seed", seed]
        out = subprocess.run(
            [str(Path(sys.executable).parent / "tessera"), "generate", "--session-scale", str(SESSION_SCALE)]
            + [str(a) for a in args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"generating shard {shard} failed:\n{out.stderr[-3000:]}")
        say(f"shard {shard + 1}/{shards}: generated")
    manifest = {
        "customers": customers,
        "days": days,
        "seed": seed,
        "products": products,
        "shards": shards,
        "session_scale": SESSION_SCALE,
    }
    (work / "generated.json").write_text(json.dumps(manifest, indent=2))
    return {**manifest, "generate_s": round(time.time() - started, 1)}


def landing_volume(landing: Path) -> dict:
    import duckdb

    from tessera.landing.loader import count_landing_records, landing_files

    con = duckdb.connect()
    out = {}
    for source_dir in sorted(p for p in landing.iterdir() if p.is_dir()):
        files = landing_files(source_dir)
        out[source_dir.name] = {
            "files": len(files),
            "bytes": sum(f.stat().st_size for f in files),
            "records": sum(count_landing_records(con, f) for f in files),
        }
    return out


# ----------------------------------------------------------------------------------------------
# the pipeline run, step by step


def step_metrics(run: dict, dagster_home: Path) -> tuple[list[dict], list[dict], str]:
    """Per step: wall, CPU, peak RSS, assets, rows out; dbt models' durations; the run id."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runs = instance.get_runs(limit=1)
    if not runs:  # tessera run refused before starting one (configuration, no manifest)
        raise SystemExit(f"bench: `tessera run` started no Dagster run; its output: {run['log']}")
    record = runs[0]
    sampler: TreeSampler = run["sampler"]
    started, steps, models = {}, {}, []
    for entry in instance.all_logs(record.run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        kind = event.event_type_value
        if kind == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started:
            begin = started[event.step_key]
            cpu, rss = sampler.window(begin, entry.timestamp)
            step = steps.setdefault(event.step_key, {"step": event.step_key, "assets": [], "rows_out": {}})
            step.update(
                status=kind.removeprefix("STEP_").lower(),
                start=begin,
                wall_s=round(entry.timestamp - begin, 2),
                cpu_s=None if cpu is None else round(cpu, 2),
                peak_rss_gb=None if rss is None else round(rss / 1024**3, 2),
            )
        elif kind == "STEP_SKIPPED":
            steps.setdefault(event.step_key, {"step": event.step_key, "assets": [], "rows_out": {}})["status"] = (
                "skipped"
            )
        elif kind == "ASSET_MATERIALIZATION":
            m = event.event_specific_data.materialization
            key = m.asset_key.to_user_string()
            step = steps.setdefault(event.step_key, {"step": event.step_key, "assets": [], "rows_out": {}})
            step["assets"].append(key)
            rows = m.metadata.get("dagster/row_count")
            if rows is not None:
                step["rows_out"][key] = int(rows.value)
            duration = m.metadata.get("Execution Duration")
            if duration is not None:
                models.append({"asset": key, "wall_s": round(float(duration.value), 2)})
    return sorted(steps.values(), key=lambda s: s.get("start", 0)), models, record.run_id


def fill_rows(steps: list[dict], duckdb_path: Path, landing: dict) -> None:
    """Rows out from DuckDB where the materialisation did not say (tables; a view holds no rows);
    rows in from upstream assets, and for a loader the records of its landing files."""
    import duckdb

    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    con = duckdb.connect(str(duckdb_path), read_only=True)
    tables = {
        f"{s}/{t}"
        for s, t in con.execute(
            "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE'"
        ).fetchall()
    }
    rows_of: dict[str, int] = {}
    for step in steps:
        for key in step["assets"]:
            if key not in step["rows_out"] and key in tables:
                schema, table = key.split("/", 1)
                step["rows_out"][key] = con.execute(f'select count(*) from "{schema}"."{table}"').fetchall()[0][0]
        rows_of.update(step["rows_out"])
    con.close()
    for step in steps:
        upstream = set()
        for key in step["assets"]:
            node = graph.get(_asset_key(key))
            upstream |= {p.to_user_string() for p in node.parent_keys}
        upstream -= set(step["assets"])
        step["rows_in"] = sum(rows_of.get(k, 0) for k in upstream) + sum(
            landing[k.split("/", 1)[1]]["records"]
            for k in step["assets"]
            if k.startswith("raw/") and k.split("/", 1)[1] in landing
        )
        step["rows_out_total"] = sum(step["rows_out"].values())


def _asset_key(user_string: str):
    import dagster as dg

    return dg.AssetKey(user_string.split("/"))


# ----------------------------------------------------------------------------------------------
# side by side: plain dbt, and the DuckDB floor


def plain_dbt_build(env: dict, work: Path) -> dict:
    dbt = str(Path(sys.executable).parent / "dbt")
    cmd = [
        dbt,
        "build",
        "--full-refresh",
        "--indirect-selection",
        "buildable",
        "--project-dir",
        str(ROOT / "dbt_project"),
        "--profiles-dir",
        str(ROOT / "dbt_project"),
        "--target-path",
        str(work / "dbt_target"),
    ]
    from tessera.settings import load_settings

    # what the Dagster dbt steps give dbt (Settings.dbt_env): the same database, memory limit,
    # threads and spill directory. Without the spill directory the profile's relative default
    # does not exist from here, and at 1m, where models spill, the plain build failed.
    env = {**env, **load_settings().dbt_env(), "TESSERA_DUCKDB_PATH": str(work / "data" / "tessera.duckdb")}
    result = run_measured(cmd, env, work / "plain_dbt.log")
    result.pop("sampler")
    if result["exit_code"] != 0:
        raise SystemExit(f"plain dbt build failed, see {result['log']}")
    return result


FLOOR_SQL = """
with
  ev as (select count(*) n, count(distinct anonymous_id) ids, count(distinct customer_id) ids2,
                sum(try_cast(quantity as double)) s from read_json('{l}/events/*.jsonl', format='newline_delimited',
                columns={{anonymous_id: 'VARCHAR', customer_id: 'VARCHAR', quantity: 'VARCHAR'}})),
  cu as (select count(*) n, count(distinct lower(trim(email))) ids, count(distinct customer_id) ids2, 0 s
         from read_csv('{l}/customers/*.csv', all_varchar=true)),
  od as (select count(*) n, count(distinct customer_id) ids, count(distinct order_id) ids2, 0 s
         from read_csv('{l}/orders/*.csv', all_varchar=true)),
  oi as (select count(*) n, count(distinct order_id) ids, count(distinct product_id) ids2,
                sum(try_cast(quantity as double) * try_cast(unit_price as double)) s
         from read_parquet('{l}/order_items/*.parquet')),
  po as (select count(*) n, count(distinct receipt_id) ids, count(distinct coalesce(loyalty_card, email, phone)) ids2,
                sum(try_cast(quantity as double) * try_cast(unit_price as double)) s
         from read_csv('{l}/pos_transactions/*.csv', all_varchar=true)),
  em as (select count(*) n, count(distinct email) ids, count(distinct campaign_id) ids2, 0 s
         from read_csv('{l}/email_events/*.csv', all_varchar=true)),
  pr as (select count(*) n, count(distinct customer_id) ids, 0 ids2, 0 s
         from read_json('{l}/privacy/*.jsonl', format='newline_delimited', columns={{customer_id: 'VARCHAR'}})),
  pd as (select count(*) n, count(distinct product_id) ids, 0 ids2, 0 s from read_parquet('{l}/products/*.parquet'))
select 'events', * from ev union all select 'customers', * from cu union all select 'orders', * from od
union all select 'order_items', * from oi union all select 'pos_transactions', * from po
union all select 'email_events', * from em union all select 'privacy', * from pr union all select 'products', * from pd
"""


def duckdb_floor(landing: Path, settings) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute(f"set threads = {int(settings.duckdb_threads)}")
    con.execute(f"set memory_limit = '{settings.duckdb_memory_limit}'")
    started = time.time()
    rows = con.execute(FLOOR_SQL.format(l=landing.as_posix())).fetchall()
    return {
        "wall_s": round(time.time() - started, 2),
        "records": {r[0]: int(r[1]) for r in rows},
        "sql": "one statement over every landing file: count, two distinct counts and a sum per source",
    }


# ----------------------------------------------------------------------------------------------
# reporting


def exponent(small: float, large: float, n_small: int, n_large: int) -> float | None:
    if not small or not large or small <= 0 or large <= 0:
        return None
    return round(math.log(large / small) / math.log(n_large / n_small), 3)


def markdown(result: dict) -> str:
    p = result["pipeline"]
    lines = [
        f"# tessera scale bench: {result['size']} ({result['customers']:,} customers, {result['days']} days)",
        "",
        f"Command: `{result['command']}` on {result['machine']['cpus']} cores, {result['machine']['memory_gb']} GB RAM.",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| pipeline wall (generation excluded) | {p['wall_s']:.1f} s ({p['wall_s'] / 60:.1f} min) |",
        f"| pipeline CPU | {p['cpu_s']:.1f} s |",
        f"| peak RSS, whole process tree (sampled) | {p['peak_tree_rss_gb']:.2f} GB |",
        f"| peak RSS, largest single process | {p['max_process_rss_gb']:.2f} GB |",
        f"| run status | {p['status']} |",
        f"| Dagster dbt steps wall | {result['orchestration']['dagster_dbt_wall_s']:.1f} s |",
        f"| plain `dbt build --full-refresh` wall | {result['orchestration']['plain_dbt_wall_s']:.1f} s |",
        f"| **orchestration overhead** (Dagster dbt / plain dbt) | **{result['orchestration']['ratio']:.2f}x** |",
        f"| DuckDB floor (one pass over every landing file) | {result['floor']['wall_s']:.1f} s |",
        f"| **pipeline / floor** | **{result['floor']['pipeline_ratio']:.1f}x** |",
        f"| generation (not in the figures above) | {result['generation'].get('generate_s', 'reused')} s |",
        "",
        "Landing volume:",
        "",
        "| source | files | records | MB |",
        "| --- | ---: | ---: | ---: |",
    ]
    for source, v in result["landing"].items():
        lines.append(f"| {source} | {v['files']} | {v['records']:,} | {v['bytes'] / 1e6:.0f} |")
    lines += [
        "",
        "Steps, in the order they ran (rows in: rows of the upstream assets; rows out: rows of the step's assets):",
        "",
        "| step | status | wall s | CPU s | peak RSS GB | rows in | rows out |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in result["steps"]:
        lines.append(
            f"| {s['step']} | {s.get('status', '')} | {s.get('wall_s', 0):.1f} | {_num(s.get('cpu_s'))} | "
            f"{_num(s.get('peak_rss_gb'), 2)} | {s.get('rows_in', 0):,} | {s.get('rows_out_total', 0):,} |"
        )
    if result["dbt_models"]:
        lines += [
            "",
            "Slowest dbt models (their own duration inside the dbt steps):",
            "",
            "| model | wall s |",
            "| --- | ---: |",
        ]
        for m in sorted(result["dbt_models"], key=lambda m: -m["wall_s"])[:15]:
            lines.append(f"| {m['asset']} | {m['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def held_back_day(landing: Path, held: Path) -> str:
    """Moves the last day's clickstream files (every shard's) from the landing folder to `held`;
    the day. Files a crashed earlier bench left in `held` go back first."""
    restore_day(landing, held)
    files = sorted((landing / "events").glob("events_*.jsonl"))
    if not files:
        raise SystemExit(f"--next-day: no events_<day>*.jsonl file in {landing / 'events'}")
    day = max(f.name.removeprefix("events_")[:10] for f in files)
    held.mkdir(parents=True, exist_ok=True)
    for f in files:
        if f.name.startswith(f"events_{day}"):
            f.rename(held / f.name)
    return day


def restore_day(landing: Path, held: Path) -> None:
    """The held-back files back in the landing folder, with a new modification time (as landing)."""
    if held.is_dir():
        for f in sorted(held.iterdir()):
            f.rename(landing / "events" / f.name)
            f = landing / "events" / f.name
            os.utime(f)
        held.rmdir()


def asset_metadata(dagster_home: Path, run_id: str, key: str) -> dict:
    """The metadata of `key`'s materialisation in a run, as plain values."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        m = entry.dagster_event.event_specific_data.materialization
        if m.asset_key.to_user_string() == key:
            return {k: getattr(v, "value", v) for k, v in m.metadata.items() if k not in ("plot", "preview")}
    return {}


RECOMMENDER_STEP = "ml__recommendation_candidates"
REFRESH_KEYS = ("refresh", "refresh_reason", "lists_from", "lists_from_version", "seconds_by_phase", "data_through")


def measured_run(label: str, work: Path, env: dict, settings, volume: dict) -> dict:
    """One `tessera run` of the whole graph under the sampler: its totals, its steps, and what the
    recommender says it did."""
    say(f"{label}: materialising the whole graph ...")
    tessera = str(Path(sys.executable).parent / "tessera")
    run = run_measured([tessera, "run"], env, work / f"pipeline_{label}.log", work / "dagster_home")
    steps, _, run_id = step_metrics(run, work / "dagster_home")
    fill_rows(steps, settings.duckdb_path, volume)
    run.pop("sampler")
    recommender = asset_metadata(work / "dagster_home", run_id, "ml/recommendation_candidates")
    step = next((s for s in steps if s["step"] == RECOMMENDER_STEP), {})
    out = {
        **run,
        "status": "success" if run["exit_code"] == 0 else "failed",
        "run_id": run_id,
        "recommender_step": {k: step.get(k) for k in ("wall_s", "cpu_s", "peak_rss_gb")},
        "recommender": {k: recommender.get(k) for k in REFRESH_KEYS},
        "steps": steps,
    }
    say(
        f"{label} {out['status']}: {run['wall_s']} s wall, {run['cpu_s']} s CPU, {run['peak_tree_rss_gb']} GB peak; "
        f"recommender {out['recommender_step']['wall_s']} s: {out['recommender']['refresh_reason']}"
    )
    return out


def next_day_markdown(result: dict) -> str:
    lines = [
        f"# tessera daily refresh: {result['size']} ({result['customers']:,} customers, {result['days']} days)",
        "",
        f"Command: `{result['command']}` on {result['machine']['cpus']} cores; load average before each run: "
        + ", ".join(f"{r}: {result[r]['load_before']}" for r in ("first_run", "next_day")),
        "",
        f"Run 1: every file but the clickstream of {result['held_back_day']}, on a fresh warehouse. "
        "Run 2: that day's files land, the graph runs again on the same warehouse.",
        "",
        "| measure | run 1 | run 2 (next day) |",
        "| --- | ---: | ---: |",
    ]
    a, b = result["first_run"], result["next_day"]
    rows = [
        ("status", a["status"], b["status"]),
        (
            "pipeline wall s",
            f"{a['wall_s']:.1f} ({a['wall_s'] / 60:.1f} min)",
            f"{b['wall_s']:.1f} ({b['wall_s'] / 60:.1f} min)",
        ),
        ("pipeline CPU s", f"{a['cpu_s']:.1f}", f"{b['cpu_s']:.1f}"),
        (
            "peak RSS GB (tree / largest process)",
            f"{a['peak_tree_rss_gb']:.2f} / {a['max_process_rss_gb']:.2f}",
            f"{b['peak_tree_rss_gb']:.2f} / {b['max_process_rss_gb']:.2f}",
        ),
        ("recommender step wall s", _num(a["recommender_step"]["wall_s"]), _num(b["recommender_step"]["wall_s"])),
        ("recommender step CPU s", _num(a["recommender_step"]["cpu_s"]), _num(b["recommender_step"]["cpu_s"])),
        ("recommender refresh", a["recommender"]["refresh"], b["recommender"]["refresh"]),
        (
            "lists from (version)",
            f"{a['recommender']['lists_from']} ({a['recommender']['lists_from_version']})",
            f"{b['recommender']['lists_from']} ({b['recommender']['lists_from_version']})",
        ),
    ]
    lines += [f"| {m} | {x} | {y} |" for m, x, y in rows]
    lines += [
        "",
        f"Run 1's recommender: {a['recommender']['refresh_reason']}",
        f"Run 2's recommender: {b['recommender']['refresh_reason']}",
        "",
    ]
    for label, r in (("run 1", a), ("run 2", b)):
        lines += [f"Recommender phases, {label}: `{json.dumps(r['recommender']['seconds_by_phase'])}`", ""]
    lines += [
        "Steps of run 2, slowest first:",
        "",
        "| step | wall s | CPU s | peak RSS GB |",
        "| --- | ---: | ---: | ---: |",
    ]
    for s in sorted(b["steps"], key=lambda s: -s.get("wall_s", 0)):
        lines.append(
            f"| {s['step']} | {s.get('wall_s', 0):.1f} | {_num(s.get('cpu_s'))} | {_num(s.get('peak_rss_gb'), 2)} |"
        )
    return "\n".join(lines) + "\n"


def _num(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def summary(results: Path = RESULTS) -> str:
    runs = []
    for size in SIZES:
        path = results / f"scale_{size}.json"
        if path.exists():
            runs.append(json.loads(path.read_text()))
    lines = [
        "# tessera scale bench: every size measured",
        "",
        "`make bench SIZE=<size>` writes `scale_<size>.json`/`.md`; this table is rebuilt from those files.",
        "",
        "| size | customers | events | pipeline wall s | CPU s | peak RSS GB (tree) | overhead vs plain dbt | pipeline / floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        p = r["pipeline"]
        lines.append(
            f"| {r['size']} | {r['customers']:,} | {r['landing'].get('events', {}).get('records', 0):,} | {p['wall_s']:.1f} | "
            f"{p['cpu_s']:.1f} | {p['peak_tree_rss_gb']:.2f} | {r['orchestration']['ratio']:.2f}x | {r['floor']['pipeline_ratio']:.1f}x |"
        )
    lines += [
        "",
        "Scaling exponent b (cost = a * size^b) between consecutive sizes; target b <= 1.1 from 100k to 1m:",
        "",
    ]
    lines += ["| from | to | b (wall) | b (CPU) |", "| --- | --- | ---: | ---: |"]
    for a, b in pairwise(runs):
        lines.append(
            f"| {a['size']} | {b['size']} | {exponent(a['pipeline']['wall_s'], b['pipeline']['wall_s'], a['customers'], b['customers'])} | "
            f"{exponent(a['pipeline']['cpu_s'], b['pipeline']['cpu_s'], a['customers'], b['customers'])} |"
        )
    if len(runs) >= 2:
        a, b = runs[-2], runs[-1]
        steps_a = {s["step"]: s for s in a["steps"]}
        lines += [
            "",
            f"Per step, {a['size']} to {b['size']} (steps taking at least 1 s at {b['size']}):",
            "",
            "| step | wall s small | wall s large | b (wall) |",
            "| --- | ---: | ---: | ---: |",
        ]
        for s in sorted(b["steps"], key=lambda s: -s.get("wall_s", 0)):
            small = steps_a.get(s["step"], {}).get("wall_s")
            if s.get("wall_s", 0) >= 1 and small:
                lines.append(
                    f"| {s['step']} | {small:.1f} | {s['wall_s']:.1f} | "
                    f"{exponent(small, s['wall_s'], a['customers'], b['customers'])} |"
                )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="10k", help="customers: 10k, 100k or 1m (default: 10k)"
    )
    parser.add_argument("--days", type=int, default=DAYS, help=f"days of generated activity (default: {DAYS})")
    parser.add_argument("--seed", type=int, default=42, help="the generator's seed (default: 42)")
    parser.add_argument("--reuse-landing", action="store_true", help="keep landing files generated by an earlier run")
    parser.add_argument("--summary", action="store_true", help="only rebuild bench/results/scale.md")
    parser.add_argument(
        "--generate-only",
        action="store_true",
        help="generate the landing files, measure nothing (then --reuse-landing)",
    )
    parser.add_argument("--customers", type=int, help="another number of customers (tests); results named by it")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where results go (default: bench/results)")
    parser.add_argument(
        "--next-day",
        action="store_true",
        help="measure the daily refresh: a run without the last day of clickstream, then one with it",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress lines (each phase and step with the elapsed time)"
    )
    args = parser.parse_args()
    global QUIET
    QUIET = args.quiet
    results = args.results_dir
    results.mkdir(parents=True, exist_ok=True)
    if args.summary:
        (results / "scale.md").write_text(summary(results))
        print(summary(results))
        return 0

    import psutil

    customers = args.customers or SIZES[args.size]
    if args.customers:
        args.size = str(args.customers)
    work = Path(os.environ.get("TESSERA_BENCH_DIR", ROOT / "data" / "bench" / "scale" / args.size)).resolve()
    env = bench_env(work)
    os.environ.update({k: env[k] for k in ("TESSERA_DATA_DIR", "DAGSTER_HOME", "TESSERA_MODE")})
    from tessera.settings import load_settings

    settings = load_settings()
    landing = settings.landing_dir
    wanted = {"customers": customers, "days": args.days, "seed": args.seed}
    previous = json.loads((work / "generated.json").read_text()) if (work / "generated.json").exists() else {}
    print(f"tessera scale bench {args.size}: {work}", flush=True)
    if args.reuse_landing and all(previous.get(k) == v for k, v in wanted.items()):
        generation = {**previous, "generate_s": None}
        say("reusing the landing files generated before")
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        say("generating ...")
        generation = generate(customers, args.days, args.seed, env, work)
        say(f"generated in {generation['generate_s']} s")
    if args.generate_only:
        return 0
    held = work / "held_back"
    restore_day(landing, held)
    # a fresh warehouse, instance and outputs for every measured run; only the landing files stay
    for name in os.listdir(work / "data"):
        if name not in (landing.name, settings.truth_dir.name):
            path = work / "data" / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(work / "dagster_home", ignore_errors=True)
    (work / "dagster_home").mkdir()
    (work / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    if args.next_day:
        return next_day(args, customers, work, env, settings, generation, results)
    volume = landing_volume(landing)
    say("landing: " + ", ".join(f"{k}={v['records']:,}" for k, v in volume.items()))

    say("materialising the whole graph ...")
    tessera = str(Path(sys.executable).parent / "tessera")
    run = run_measured([tessera, "run"], env, work / "pipeline.log", work / "dagster_home")
    steps, models, run_id = step_metrics(run, work / "dagster_home")
    fill_rows(steps, settings.duckdb_path, volume)
    run.pop("sampler")
    status = "success" if run["exit_code"] == 0 else "failed"
    # what the run built, table by table: two runs of the same landing files must be equal
    # (bench/fingerprint.py --compare A B, with A and B two copies of scale_<size>.json)
    built = None
    if status == "success":
        import duckdb
        from fingerprint import fingerprint  # bench/, beside this script

        with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
            built = fingerprint(con)
    say(f"pipeline {status}: {run['wall_s']} s wall, {run['cpu_s']} s CPU, {run['peak_tree_rss_gb']} GB peak")

    dbt_steps = [s for s in steps if s["step"].startswith("dbt_") and "wall_s" in s]
    say("plain dbt build of the same project ...")
    plain = plain_dbt_build(env, work)
    say(f"plain dbt: {plain['wall_s']} s")
    say("DuckDB floor ...")
    floor = duckdb_floor(landing, settings)
    say(f"floor: {floor['wall_s']} s")

    dagster_dbt = sum(s["wall_s"] for s in dbt_steps)
    result = {
        "size": args.size,
        "customers": customers,
        "days": args.days,
        "seed": args.seed,
        "command": f"make bench SIZE={args.size}",
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
            "python": platform.python_version(),
        },
        "settings": {
            "duckdb_memory_limit": settings.duckdb_memory_limit,
            "duckdb_threads": settings.duckdb_threads,
            "duckdb_temp_dir": str(settings.duckdb_temp_dir),
            "gx_max_rows": settings.gx_max_rows,
        },
        "generation": generation,
        "landing": volume,
        "pipeline": {**run, "status": status, "run_id": run_id},
        "steps": steps,
        "dbt_models": models,
        "orchestration": {
            "dagster_dbt_steps": [s["step"] for s in dbt_steps],
            "dagster_dbt_wall_s": round(dagster_dbt, 2),
            "plain_dbt_wall_s": plain["wall_s"],
            "plain_dbt_cpu_s": plain["cpu_s"],
            "ratio": round(dagster_dbt / plain["wall_s"], 3),
        },
        "floor": {**floor, "pipeline_ratio": round(run["wall_s"] / floor["wall_s"], 2)},
        "fingerprint": built,
    }
    (results / f"scale_{args.size}.json").write_text(json.dumps(result, indent=2, default=str))
    (results / f"scale_{args.size}.md").write_text(markdown(result))
    (results / "scale.md").write_text(summary(results))
    print(markdown(result))
    print(summary(results))
    return 0 if status == "success" else 1


def next_day(args, customers: int, work: Path, env: dict, settings, generation: dict, results: Path) -> int:
    """--next-day: run 1 without the last day of clickstream, run 2 on the same warehouse with it."""
    import psutil

    landing, held = settings.landing_dir, work / "held_back"
    day = held_back_day(landing, held)
    say(f"held back the clickstream of {day}")
    try:
        load = os.getloadavg()
        first = measured_run("first_run", work, env, settings, landing_volume(landing))
        first["load_before"] = [round(x, 2) for x in load]
    finally:
        restore_day(landing, held)
    load = os.getloadavg()
    second = measured_run("next_day", work, env, settings, landing_volume(landing))
    second["load_before"] = [round(x, 2) for x in load]
    result = {
        "size": args.size,
        "customers": customers,
        "days": args.days,
        "seed": args.seed,
        "command": f".venv/bin/python bench/scale.py --size {args.size} --next-day --reuse-landing",
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1)},
        "settings": {
            "duckdb_memory_limit": settings.duckdb_memory_limit,
            "duckdb_threads": settings.duckdb_threads,
            "recommender_retrain_every_days": settings.recommender_retrain_every_days,
        },
        "generation": generation,
        "held_back_day": day,
        "first_run": first,
        "next_day": second,
    }
    (results / f"scale_{args.size}_next_day.json").write_text(json.dumps(result, indent=2, default=str))
    (results / f"scale_{args.size}_next_day.md").write_text(next_day_markdown(result))
    print(next_day_markdown(result))
    return 0 if first["status"] == second["status"] == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
