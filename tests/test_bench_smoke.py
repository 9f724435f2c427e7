"""The benchmark scripts keep working: each runs at a tiny size (the figures are not checked here;
the README reports them at full size). A bench that rots silently cannot be rerun by anyone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_recommender_speed_bench_runs_the_asset_code_at_a_tiny_size(tmp_path):
    out = tmp_path / "speed.json"
    args = ["--interactions", "20000", "--customers", "2000", "--items", "300", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "recommender_speed.py"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["interactions"] == 20000 and result["customers"] == 2000
    # every customer gets a list: personalised, from features, or popularity
    assert result["customers_with_recommendations"] == 2000
    assert result["recommendations"] == 2000 * 10
    assert set(result["sources"]) <= {"personalised", "cold_start_features", "popularity"}


def test_serving_bench_loads_the_published_snapshots_and_answers_every_request(pipeline, tmp_path):
    _, settings = pipeline
    out = tmp_path / "serving.json"
    args = ["--customers", "1500", "--rate", "200", "--seconds", "2", "--warmup", "0.5", "--port", "8766"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "serving.py"), *args, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    # more customers than the pipeline published: each one copied under new keys
    assert result["customers"] == 1500
    assert result["requests_measured"] == 400 and result["unexpected_answers"] == []
    assert sum(result["statuses"].values()) == 400 and set(result["statuses"]) <= {"200", "404"}
