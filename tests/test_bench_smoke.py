"""The benchmark scripts keep working: each runs at a tiny size (the figures are not checked here;
the README reports them at full size). A bench that rots silently cannot be rerun by anyone."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_recommender_speed_bench_runs_the_asset_code_at_a_tiny_size(tmp_path):
    out = tmp_path / "speed.json"
    args = ["--interactions", "20000", "--customers", "2000", "--items", "300", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "recommender_speed.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["interactions"] == 20000 and result["customers"] == 2000
    # every customer gets a list: personalised, from features, or popularity
    assert result["customers_with_recommendations"] == 2000
    assert result["recommendations"] == 2000 * 10
    assert set(result["sources"]) <= {"personalised", "cold_start_features", "popularity"}


def test_serving_bench_loads_the_published_snapshots_and_answers_every_request(pipeline, tmp_path):
    _, _settings = pipeline
    out = tmp_path / "serving.json"
    from tessera.realtime.redis_server import free_port

    # a free port: a fixed one collided with another benchmark on the machine (CI rehearsal)
    port = str(free_port())
    args = ["--customers", "1500", "--rate", "200", "--seconds", "2", "--warmup", "0.5", "--port", port]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "serving.py"), *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    # more customers than the pipeline published: each one copied under new keys
    assert result["customers"] == 1500
    assert result["requests_measured"] == 400 and result["unexpected_answers"] == []
    assert sum(result["statuses"].values()) == 400 and set(result["statuses"]) <= {"200", "404"}


@pytest.mark.graph
@pytest.mark.system  # the whole graph, a plain dbt build and the floor in child processes
def test_scale_bench_measures_every_step_and_both_baselines_at_a_tiny_size(tmp_path):
    """`make bench` at 300 customers: the whole graph runs, every step gets wall, CPU and memory
    figures, loaders' rows in are their landing records, and the plain dbt build and the DuckDB
    floor are measured over the same data."""
    import os

    # no Great Expectations Data Docs (about a sixth of this run's wall time; nothing here reads
    # them, tests/test_quality_gates.py does): the gates still validate every batch
    env = {**os.environ, "TESSERA_BENCH_DIR": str(tmp_path / "work"), "TESSERA_GX_DOCS_DIR": ""}
    args = ["--customers", "300", "--days", "100", "--results-dir", str(tmp_path / "results")]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # progress: each phase and each step of the run as it ends, with the elapsed time (issue 39)
    said = done.stdout.splitlines()
    for phase in ("generating ...", "materialising the whole graph ...", "step raw__events done in",
                  "step dbt_marts done in", "pipeline success:", "plain dbt:", "floor:"):  # fmt: skip
        assert any(re.match(r"\[ *\d+ s\] +" + re.escape(phase), line) for line in said), (phase, said[:40])
    result = json.loads((tmp_path / "results" / "scale_300.json").read_text())
    assert result["pipeline"]["status"] == "success" and result["customers"] == 300
    steps = {s["step"]: s for s in result["steps"]}
    assert {"raw__events", "dbt_staging", "dbt_marts", "privacy__erasure", "ml__recommendation_candidates"} <= set(
        steps
    )
    for s in steps.values():
        assert s["status"] == "success" and s["wall_s"] >= 0 and s["cpu_s"] is not None and s["peak_rss_gb"] > 0, s
    landing = result["landing"]
    assert steps["raw__events"]["rows_in"] == landing["events"]["records"] > 0
    assert steps["raw__events"]["rows_out_total"] <= landing["events"]["records"]
    # the floor read every landing record
    assert result["floor"]["records"] == {k: v["records"] for k, v in landing.items()}
    assert result["orchestration"]["plain_dbt_wall_s"] > 0 and result["orchestration"]["ratio"] > 0
    assert set(result["orchestration"]["dagster_dbt_steps"]) >= {"dbt_staging", "dbt_marts"}
    assert "| raw__events |" in (tmp_path / "results" / "scale_300.md").read_text()
    # what the run built, fingerprinted right after it (bench/fingerprint.py): the published
    # tables hold the rows the publishing steps reported
    built = result["fingerprint"]
    for name in ("customer_segments", "customer_scores", "customer_recommendations"):
        rows = steps[f"publish__{name}"]["rows_out"][f"publish/{name}"]
        assert built[f"publish.{name}"]["rows"] == rows > 0, name


def test_scale_bench_says_each_step_of_the_run_as_it_ends(tmp_path, monkeypatch, capsys):
    """`make bench` was silent for the whole run (154 s at 10k): the StepWatcher reads the run's
    event log (Dagster's per-run SQLite file) and says each step that ended, and the running ones
    when none has ended for a while."""
    import sqlite3
    import time
    from datetime import UTC, datetime

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import scale

    runs = tmp_path / "history" / "runs"
    runs.mkdir(parents=True)
    (runs / "index.db").write_text("")
    con = sqlite3.connect(runs / "run-1.db")
    con.execute(
        "create table event_logs (id integer primary key, dagster_event_type text, step_key text, timestamp text)"
    )
    events = [("STEP_START", "raw__events", "12:00:00.5"), ("STEP_START", "dbt_staging", "12:00:01"),
              ("STEP_SUCCESS", "raw__events", "12:00:03"), ("STEP_OUTPUT", "dbt_staging", "12:00:04"),
              ("STEP_FAILURE", "dbt_staging", "12:00:13.5"), ("STEP_SKIPPED", "dbt_marts", "12:00:14")]  # fmt: skip
    events = [(kind, step, f"2026-12-07 {at}") for kind, step, at in events]
    insert = "insert into event_logs (dagster_event_type, step_key, timestamp) values (?, ?, ?)"
    con.executemany(insert, events[:3])
    con.commit()
    watcher = scale.StepWatcher(tmp_path, since=time.time() - 60)
    watcher.poll()
    watcher.start()  # as the bench runs it: a thread, stopped (joined, a last poll) when the run ends
    con.executemany(insert, events[3:])
    con.commit()
    watcher.stop()
    assert not watcher.is_alive()
    said = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert said == [
        "  step raw__events done in 2.5 s (1 steps ended, 0 skipped)",
        "  step dbt_staging FAILED in 12.5 s (2 steps ended, 0 skipped)",
    ]
    con.execute(insert, ("STEP_START", "ml__recommender", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")))
    con.commit()
    monkeypatch.setattr(scale, "HEARTBEAT_SECONDS", 0.0)
    watcher.poll()
    assert capsys.readouterr().out.split("] ", 1)[1] == "  running: ml__recommender (0 s)\n"
    assert watcher.skipped == 1


def test_fingerprint_ignores_row_order_and_run_ids_and_sees_any_changed_value(tmp_path, monkeypatch):
    """bench/fingerprint.py, which compares two builds of the same landing files: a second build
    that wrote the same rows in another order under other run ids is identical; one changed score
    is a difference, named by its table."""
    import duckdb

    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # for this test only
    from fingerprint import main

    def build(name: str, rows: list[tuple], run_id: str) -> Path:
        path = tmp_path / f"{name}.duckdb"
        with duckdb.connect(str(path)) as con:
            con.execute("create schema marts; create schema publish")
            for table in ("dim_customers", "customer_rfm", "customer_features"):
                con.execute(f"create table marts.{table} as select 'c1' as customer_key")
            con.execute(
                "create table publish.scores (customer_key varchar, score double, model_run_id varchar, created_at timestamp)"
            )
            con.executemany("insert into publish.scores values (?, ?, ?, now())", [(*row, run_id) for row in rows])
        assert main([str(path), "--out", str(tmp_path / f"{name}.json")]) == 0
        return tmp_path / f"{name}.json"

    rows = [("c1", 0.5), ("c2", 0.25), ("c3", 0.125)]
    first = build("first", rows, "run-a")
    assert json.loads(first.read_text())["publish.scores"]["left_out"] == ["created_at", "model_run_id"]
    second = build("second", rows[::-1], "run-b")
    assert main(["--compare", str(first), str(second)]) == 0
    changed = build("changed", [("c1", 0.5), ("c2", 0.25), ("c3", 0.126)], "run-a")
    assert main(["--compare", str(first), str(changed)]) == 1
    fewer = build("fewer", rows[:2], "run-a")
    assert main(["--compare", str(first), str(fewer)]) == 1


def test_sessions_bench_evaluates_every_method_on_the_generated_clickstream_at_a_tiny_size(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_sessions", ROOT / "bench" / "sessions.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "sessions.json"
    args = ["--datasets", "demo", "--demo-customers", "300", "--no-tune", "--latency-sessions", "5", "--out", str(out)]
    assert bench.main(args) == 0
    demo = json.loads(out.read_text())["demo"]
    assert demo["generated"] is True
    assert demo["split"]["test_sessions"] > 0
    for protocol in ("last_item", "remaining_items"):
        assert set(demo["results"][protocol]) == {"popularity", "item_item", "sknn", "vsknn"}
        assert {r["cases"] for r in demo["results"][protocol].values()} == {demo["results"][protocol]["sknn"]["cases"]}
    assert demo["single_session_latency"]["vsknn"]["requests"] == 5


def test_product_lists_bench_scores_bought_together_against_top_sellers_on_a_tiny_export(tmp_path):
    import os
    from datetime import datetime, timedelta

    import polars as pl

    # an Online Retail-shaped export: 60 days of two-item invoices, P1 with P2 on even days, P3 with
    # P4 on odd ones (B and D are adjustment codes in Online Retail); a cancellation and a postage
    # line that the bench must drop
    day = [datetime(2011, 1, 1) + timedelta(days=n) for n in range(60)]
    rows = [
        (f"5{n:02d}", code, day[n], 1) for n in range(60) for code in (("P1", "P2") if n % 2 == 0 else ("P3", "P4"))
    ]
    rows += [("C999", "P1", day[59], -1), ("559", "POST", day[59], 1)]
    lines = pl.DataFrame(rows, schema=["InvoiceNo", "StockCode", "InvoiceDate", "Quantity"], orient="row").with_columns(
        Description=pl.lit("x"), UnitPrice=pl.lit(1.0), CustomerID=pl.lit(1.0), Country=pl.lit("UK")
    )
    (tmp_path / "online_retail").mkdir()
    lines.write_parquet(tmp_path / "online_retail" / "online_retail.parquet")
    out = tmp_path / "lists.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "product_lists.py"), "--dataset", "online_retail", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "TESSERA_SHARED_DATA": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())["datasets"]["online_retail"]
    methods = result["methods"]
    # days 29-59 are held out (the split is 30 days before the last line): 31 two-item baskets
    assert result["test_baskets_with_2_plus_items"] == 31
    published = methods["cosine_min_support_2 (published)"]
    assert (published["hit_rate@10"], published["coverage"], published["distinct_products_shown"]) == (1.0, 1.0, 4)
    # four products: the top sellers' 10 hold every partner too
    assert methods["popularity (top sellers)"]["hit_rate@10"] == 1.0
