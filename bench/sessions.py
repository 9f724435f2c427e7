"""Session recommenders on real and generated sessions: popularity, item-item co-occurrence
(the baseline to beat), SKNN and V-SKNN (ml/sessions.py), on a time-based session split
(ml/session_evaluation.py), both protocols (last item; remaining items after each prefix).

    .venv/bin/python bench/sessions.py                       # every dataset
    .venv/bin/python bench/sessions.py --datasets online_retail --demo-customers 500

Datasets:
- online_retail (real): UCI Online Retail invoices as sessions (cancellations dropped; the
  items of an invoice in file order, which is the order of its lines, not of clicks);
- complete_journey (real but thin): a 75,000-line random sample of line items, so its baskets
  hold 1.6 lines on average and most are a single line;
- demo (generated): the demo generator's clickstream (tessera/landing/generate.py), product
  views and cart adds per web session, anonymous ones included. Its products are drawn
  independently from each person's category taste: figures on it show the code runs, not quality;
- ga4_sample, retailrocket_sample (real formats, a few hundred events): mapped to landing
  events (tessera/landing/mapping.py) and read as sessions, to prove the readers; far too
  small to evaluate, so only counted.

The SKNN / V-SKNN defaults (k=100, sample 500) are reported, and a version tuned on a
validation split carved from the training sessions (the last 10 % of them; the last-item
protocol's MRR@10 chooses), fitted again on all training sessions and measured on the test
once. Single-session latency: recommend() on held-out sessions one at a time (median, p95).
The machine is shared: timings are noisy.

Results: bench/results/sessions.json, and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml.session_data import (  # noqa: E402
    clickstream_sessions,
    complete_journey_sessions,
    landing_events,
    online_retail_sessions,
)
from ml.session_evaluation import PROTOCOLS, evaluate, make_cases, make_split, split_summary  # noqa: E402
from ml.sessions import Sessions, make_model, sessions_from_events  # noqa: E402
from tessera.markdown import table  # noqa: E402

SHARED = Path("/work/shared/data")
DATASETS = ("online_retail", "complete_journey", "demo")
FORMAT_SAMPLES = ("ga4_sample", "retailrocket_sample")
K = 10
GRID_K = (50, 100, 200, 500, 1000)
GRID_SAMPLE = (250, 500, 1000, 2500, 5000, 10000)
GRID_IDF = (0.0, 1.0)
SEED = 42


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=[*DATASETS, *FORMAT_SAMPLES])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--demo-customers", type=int, default=2000, help="the demo generator's customers")
    parser.add_argument("--test-share", type=float, default=0.1)
    parser.add_argument("--no-tune", action="store_true", help="skip the validation grid")
    parser.add_argument("--latency-sessions", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sessions.json")
    return parser.parse_args(argv)


def demo_frame(customers: int, work: Path):
    from tessera.landing.generate import GenerateConfig, generate

    generate(GenerateConfig(customers=customers, seed=SEED), work / "landing", work / "truth")
    return clickstream_sessions(landing_events(work / "landing"), "demo landing events")


def sample_frame(name: str, data: Path, work: Path):
    from tessera.landing.mapping import map_export

    source = {"ga4_sample": "ga4_events_sample.jsonl", "retailrocket_sample": "events_sample.csv"}[name]
    mapping = name.removesuffix("_sample")
    map_export(mapping, data / name / source, work / name)
    return clickstream_sessions(landing_events(work / name), f"{name} mapped events")


def read(name: str, data: Path, demo_customers: int, work: Path):
    if name == "online_retail":
        return online_retail_sessions(data / "online_retail" / "online_retail.parquet")
    if name == "complete_journey":
        return complete_journey_sessions(data / "complete_journey" / "transactions_sample.parquet")
    if name == "demo":
        return demo_frame(demo_customers, work)
    return sample_frame(name, data, work)


def describe(sessions: Sessions) -> dict:
    lengths = sessions.lengths
    return {
        "sessions": sessions.n_sessions,
        "items": sessions.n_items,
        "entries": int(sessions.positions.nnz),
        "mean_session_length": float(lengths.mean()) if len(lengths) else 0.0,
        "share_of_single_item_sessions": float((lengths == 1).mean()) if len(lengths) else 0.0,
    }


def tune(train: Sessions, test_share: float) -> dict[str, dict]:
    """The best parameters of SKNN and V-SKNN by last-item MRR@10 on the last test_share of the
    training sessions, fitted on the rest (the test sessions are never seen)."""
    validation = make_split(train, test_share)
    cases = make_cases(validation.test, "last_item")
    best: dict[str, dict] = {}
    for method in ("sknn", "vsknn"):
        grid = [
            {"k": k, "sample_size": m, **({"idf_weight": idf} if method == "vsknn" else {})}
            for k in GRID_K
            for m in GRID_SAMPLE
            for idf in (GRID_IDF if method == "vsknn" else (0.0,))
            if k <= m
        ]
        tried = []
        for params in grid:
            result = evaluate(make_model(method, **params).fit(validation.train), cases, K)
            tried.append((result[f"mrr_at_{K}"], result[f"recall_at_{K}"], params))
        mrr, recall, params = max(tried, key=lambda t: (t[0], t[1]))
        best[method] = {
            "params": params,
            "validation_mrr_at_10": mrr,
            "validation_recall_at_10": recall,
            "validation_cases": cases.queries.shape[0],
            "configurations_tried": len(grid),
        }
    return best


def latency(model, test: Sessions, n: int) -> dict:
    """recommend() on the first n held-out sessions (all items but the last), one at a time."""
    rng = np.random.default_rng(SEED)
    rows = rng.permutation(test.n_sessions)[:n]
    times = []
    for row in rows:  # one request at a time, as the API scores: the loop is the measurement
        m = test.positions[row]
        items = m.indices[np.argsort(m.data)][:-1].tolist()
        started = time.perf_counter()
        model.recommend(items, K)
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1000
    return {"requests": len(ms), "median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


def run_dataset(name: str, frame, args) -> dict:
    sessions = sessions_from_events(frame, "session", "item", "time")
    out: dict = {"data": describe(sessions)}
    if name in FORMAT_SAMPLES:
        out["note"] = "a format sample: read to prove the reader, too small to evaluate"
        return out
    split = make_split(sessions, args.test_share)
    out["split"] = {"test_share": args.test_share, **split_summary(split)}
    models = {m: {} for m in ("popularity", "item_item", "sknn", "vsknn")}
    if not args.no_tune:
        out["tuning"] = tune(split.train, args.test_share)
        for method, chosen in out["tuning"].items():
            models[f"{method}_tuned"] = chosen["params"]
    out["results"] = {p: {} for p in PROTOCOLS}
    out["fit_seconds"], out["params"], out["single_session_latency"] = {}, {}, {}
    cases = {p: make_cases(split.test, p) for p in PROTOCOLS}
    for label, params in models.items():
        started = time.perf_counter()
        model = make_model(label.removesuffix("_tuned"), **params).fit(split.train)
        out["fit_seconds"][label] = time.perf_counter() - started
        out["params"][label] = model.params()
        for protocol in PROTOCOLS:
            out["results"][protocol][label] = evaluate(model, cases[protocol], K)
        if split.test.n_sessions:
            out["single_session_latency"][label] = latency(model, split.test, args.latency_sessions)
    return out


def markdown(results: dict) -> str:
    lines = []
    for name, r in results.items():
        lines.append(f"\n### {name}: {json.dumps(r['data'])}")
        if "results" not in r:
            lines.append(r.get("note", ""))
            continue
        lines.append(f"split: {json.dumps(r['split'])}")
        for protocol, by_method in r["results"].items():
            rows = [
                [
                    method,
                    *(f"{m[f'{x}_at_{K}']:.4f}" for x in ("recall", "hit_rate", "mrr", "ndcg", "coverage")),
                    m["cases"],
                    f"{r['single_session_latency'].get(method, {}).get('median_ms', float('nan')):.2f}",
                ]
                for method, m in by_method.items()
            ]
            header = ["method", "R@10", "HR@10", "MRR@10", "NDCG@10", "coverage@10", "cases", "1-session ms"]
            lines.append(f"\n{protocol}\n\n" + table(rows, header))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        for name in args.datasets:
            if name not in (*DATASETS, *FORMAT_SAMPLES):
                raise SystemExit(f"unknown dataset {name!r}; known: {', '.join((*DATASETS, *FORMAT_SAMPLES))}")
            started = time.perf_counter()
            frame = read(name, args.data, args.demo_customers, Path(tmp))
            results[name] = run_dataset(name, frame, args)
            results[name]["seconds"] = time.perf_counter() - started
            results[name]["generated"] = name == "demo"
            print(f"{name}: {results[name]['seconds']:.1f} s", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
