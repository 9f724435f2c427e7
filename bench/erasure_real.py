"""An erasure on a real shop's export, proven by the byte scan (issue 33).

    .venv/bin/python bench/erasure_real.py                          # Online Retail, 300 customers
    .venv/bin/python bench/erasure_real.py --dataset complete_journey --sample-customers 300

A seeded sample of the export in ../shared/data is mapped and run (bench/real_data.py's own
steps), three of its customers with orders ask for erasure by their id, and the graph runs again.
Reported: whether the run succeeded, the erasure log and journal, the identifiers the warehouse
linked to the three before the erasure, and a byte scan of every file under the data directory
and the Dagster home for them (the landing folder, the shop's delivery, excluded). Figures go to
bench/results/erasure_real_<dataset>_<n>.json.
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
sys.path.insert(0, str(ROOT / "bench"))

from crash_matrix import byte_scan, identifiers, journal, release_consistent, request_erasure  # noqa: E402
from real_data import map_and_run, source_of  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("online_retail", "complete_journey"), default="online_retail")
    parser.add_argument("--sample-customers", type=int, default=300)
    parser.add_argument("--reuse", action="store_true", help="keep the first run of the last call")
    args = parser.parse_args(argv)
    name = f"{args.dataset}_{args.sample_customers}"
    data_dir = ROOT / "data" / "bench" / "erasure_real" / name
    home = data_dir.parent / f"{name}_dagster_home"
    if not (args.reuse and (data_dir / "tessera.duckdb").exists()):
        source = source_of(args.dataset, data_dir.parent / f"{name}_work", args.sample_customers)
        first = map_and_run(args.dataset, source, data_dir)
        if not first["run_succeeded"]:
            print("the first run failed")
            return 1
    ids = request_erasure(data_dir, unique_email=False)  # a real export may carry no emails
    values = identifiers(data_dir / "tessera.duckdb", ids)
    before = journal(data_dir / "tessera.duckdb")
    env = {
        **os.environ,
        "TESSERA_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(home),
        "TESSERA_MODE": os.environ.get("TESSERA_MODE", "demo"),
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }
    started = time.perf_counter()
    second = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "run"], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    out = {
        "dataset": args.dataset,
        "sample_customers": args.sample_customers,
        "erased_customers": len(ids),
        "identifiers_scanned": len(values),
        "identifier_kinds_min_6_chars": sum(len(v) >= 6 for v in values),
        "erasure_run_succeeded": second.returncode == 0,
        "erasure_run_seconds": round(time.perf_counter() - started, 1),
        "journal_before": before,
        "journal_after": journal(data_dir / "tessera.duckdb"),
        "release_problems": release_consistent(data_dir / "publish"),
        "bytes": byte_scan(data_dir, home, values),
    }
    if second.returncode != 0:
        out["output"] = (second.stdout + second.stderr)[-3000:]
    path = ROOT / "bench" / "results" / f"erasure_real_{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "output"}, indent=2))
    return 0 if out["erasure_run_succeeded"] and not out["bytes"]["hits"] and not out["release_problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
