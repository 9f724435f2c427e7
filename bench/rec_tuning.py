"""`tessera recommend tune` on real purchases: trials run, the winner, its validation and test
figures against the defaults', wall time (issue 37, "Honest tuning").

    .venv/bin/python bench/rec_tuning.py                                  # both datasets, 600 s each
    .venv/bin/python bench/rec_tuning.py --dataset online_retail_last30 --time-budget 600
    .venv/bin/python bench/rec_tuning.py --dataset complete_journey --families lightfm_hybrid,als,item_item,recently_popular,most_popular

The interactions come from bench/rec_families.py's loaders (Online Retail goods, positive
quantities, no cancellations, known customers; the Complete Journey transactions sample), written
to a temporary Parquet file and handed to the CLI as a user would: test = the last 30 days,
validation = the 30 days before it, carved out of training. MLflow runs go to
$MLFLOW_TRACKING_URI (default: bench/results/rec_tuning_mlflow.db). Timings are wall time on a
shared machine: noisy. Writes bench/results/rec_tuning.json (the CLI's --out per dataset).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rec_families import DATASETS  # noqa: E402

# the two shapes of issue 37: Online Retail's last 30 days, and Complete Journey's
TUNED = ("online_retail_last30", "complete_journey")
RESULTS = ROOT / "bench" / "results"


def run(name: str, time_budget: float, max_trials: int | None, families: str | None, workdir: Path) -> dict:
    from tessera.cli import main as cli

    load, days = DATASETS[name]
    interactions = workdir / f"{name}.parquet"
    load().to_parquet(interactions)
    out = workdir / f"{name}.json"
    argv = ["recommend", "tune", "--interactions", str(interactions), "--holdout-days", str(days)]
    argv += ["--validation-days", str(days), "--time-budget", str(time_budget), "--out", str(out)]
    argv += ["--experiment", f"bench-rec-tuning-{name}"]
    if max_trials:
        argv += ["--max-trials", str(max_trials)]
    if families:
        argv += ["--families", families]
    print(f"\n## {name}: tessera {' '.join(argv)}", flush=True)
    started = time.perf_counter()
    code = cli(argv)
    if code != 0:
        raise SystemExit(f"{name}: tessera recommend tune exited {code}")
    return {"argv": argv, "wall_seconds": round(time.perf_counter() - started, 1), **json.loads(out.read_text())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=TUNED, action="append")
    p.add_argument("--time-budget", type=float, default=600.0)
    p.add_argument("--max-trials", type=int)
    p.add_argument("--families", help="passed on to the command (default: its default families)")
    p.add_argument("--out", type=Path, default=RESULTS / "rec_tuning.json")
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{RESULTS / 'rec_tuning_mlflow.db'}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="rec_tuning_") as tmp:
        for name in args.dataset or TUNED:
            key = f"{name} families={args.families}" if args.families else name
            results[key] = run(name, args.time_budget, args.max_trials, args.families, Path(tmp))
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    args.out.write_text(json.dumps({**previous, **results}, indent=2, default=str))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
