"""Does the live-session blend beat the session recommendations alone? Next-item hit rate at 10 on
real sessions replayed event by event (tessera/realtime/blend.py, the code the API serves).

    .venv/bin/python bench/visitor_blend.py                                  # online_retail, complete_journey
    .venv/bin/python bench/visitor_blend.py --datasets online_retail --max-sessions 1500

Replay. A held-out session is a cart filled one product at a time (an Online Retail invoice, a
Complete Journey basket: every product of it was put in the cart and bought). After the first n
products (n = 1 .. min(L - 1, --max-given)) the visitor's state is what the state worker would hold:
recent views = cart = those n products, recent categories = theirs, newest first. The target is
product n + 1 (strictly the next one). Compared, at 10:

- (a) session recommendations alone: V-SKNN with the served parameters
  (tessera/publish/sessions.py SERVED_PARAMS) over the n products, filled up with the popular
  products (what POST /v1/sessions/recommendations answers);
- (b) the blend: (a)'s list fused with the cart complements (bought-together lists, ml/product_lists.py
  with the published parameters, computed on the training sessions), boosted by the recently
  viewed categories and, if chosen, the time-of-day prior; then each signal alone.

The blend's weights are chosen on a validation split (the last 10 % of the training sessions,
models fitted on the rest), by hit rate at 10 (ties: MRR), over a small grid; the test sessions
(the last 10 % of all sessions by start) are scored once with the chosen weights. The cases of a
split are a seeded sample of at most --max-sessions sessions.

Datasets (/work/shared/data): online_retail (categories: the Online Retail mapping's, the last word
of the name shared by >= 20 products, else "other"; tessera/landing/mapping.py), complete_journey
(product_category; a 75,000-line sample, its baskets hold 1.6 lines on average). ga4_sample and
retailrocket_sample are mapped and counted: a few hundred events, no evaluable session count.
No data set here has both views and cart adds in quantity, so views and cart are the same products
in the replay; device is in none of the evaluable ones.

Results: bench/results/visitor_blend.json and .md. The machine is shared: only figures of quality,
no timing is compared.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml.product_lists import BOUGHT_TOGETHER, DEFAULT_PARAMS, co_occurrence  # noqa: E402
from ml.rec_metrics import top_k  # noqa: E402
from ml.session_data import clickstream_sessions, complete_journey_sessions, landing_events, online_retail_sessions  # noqa: E402
from ml.session_evaluation import make_split, split_summary  # noqa: E402
from ml.sessions import Sessions, make_model, query_matrix, sessions_from_events  # noqa: E402
from tessera.markdown import table  # noqa: E402
from tessera.publish.sessions import SERVED_METHOD, SERVED_PARAMS  # noqa: E402
from tessera.realtime.blend import (  # noqa: E402
    CART_COMPLEMENT,
    SESSION_KNN,
    BlendWeights,
    Ranked,
    blend,
    category_affinity,
    complement_list,
    daypart,
    daypart_lift,
)

SHARED = Path("/work/shared/data")
DATASETS = ("online_retail", "complete_journey")
FORMAT_SAMPLES = ("ga4_sample", "retailrocket_sample")
K = 10
POOL = 50
SEED = 42
GRID = {"complement": (0.0, 0.5, 1.0, 2.0), "category": (0.0, 0.25, 0.5, 1.0), "time_of_day": (0.0, 0.5)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=[*DATASETS, *FORMAT_SAMPLES])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--max-sessions", type=int, default=600, help="sessions sampled per split")
    parser.add_argument("--max-given", type=int, default=5, help="prefixes per session: n = 1 .. this")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "visitor_blend.json")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------- data
def online_retail(data: Path, work: Path) -> tuple[pl.DataFrame, dict[str, str]]:
    from tessera.landing.mapping import map_export

    source = data / "online_retail" / "online_retail.parquet"
    map_export("online_retail", source, work / "online_retail")
    products = pl.read_parquet(work / "online_retail" / "products" / "*.parquet")
    categories = dict(zip(products["product_id"].cast(pl.String), products["category"], strict=True))
    return online_retail_sessions(source), categories


def complete_journey(data: Path) -> tuple[pl.DataFrame, dict[str, str]]:
    products = pl.read_parquet(data / "complete_journey" / "products.parquet")
    ids = products["product_id"].cast(pl.Int64).cast(pl.String)
    categories = dict(zip(ids, products["product_category"], strict=True))
    return complete_journey_sessions(data / "complete_journey" / "transactions_sample.parquet"), categories


def format_sample(name: str, data: Path, work: Path) -> dict:
    from tessera.landing.mapping import map_export

    source = {"ga4_sample": "ga4_events_sample.jsonl", "retailrocket_sample": "events_sample.csv"}[name]
    map_export(name.removesuffix("_sample"), data / name / source, work / name)
    frame = clickstream_sessions(landing_events(work / name), f"{name} mapped events")
    sessions = sessions_from_events(frame, "session", "item", "time")
    return {
        "product_events": frame.height,
        "sessions": sessions.n_sessions,
        "sessions_with_2_or_more_products": int((sessions.lengths >= 2).sum()),
        "note": "counted only: far too few sessions to evaluate a blend on",
    }


# ------------------------------------------------------------------------------------ fitting
class Fitted:
    """What the API holds in memory, built from training sessions: the session model, the
    bought-together lists, the popular products, the time-of-day lift."""

    def __init__(self, train: Sessions, categories: dict[str, str]):
        self.items = train.items
        self.model = make_model(SERVED_METHOD, **SERVED_PARAMS).fit(train)
        self.category = [categories.get(str(p)) for p in train.items]
        counts = np.asarray(train.binary().sum(axis=0)).ravel()
        popular = top_k(counts[None, :], train.n_items)[0]
        self.popular = [self.product(int(c)) for c in popular[popular >= 0][:200]]
        self.lift = daypart_lift(train.positions, train.starts / 1e6)
        self.lists = self.bought_together(train)

    def product(self, column: int) -> dict:
        return {"product_id": str(self.items[column]), "product_name": None, "category": self.category[column]}

    def bought_together(self, train: Sessions) -> dict[str, list[dict]]:
        m = train.positions.tocsr()
        baskets = pl.DataFrame(
            {
                "basket_id": np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)),
                "product_id": pl.Series(train.items[m.indices], dtype=pl.String),
            }
        )
        targets = pl.DataFrame({"product_id": pl.Series(train.items, dtype=pl.String)})
        con = duckdb.connect()
        try:
            con.register("baskets", baskets)
            con.register("targets", targets)
            frame = co_occurrence(
                con, "select * from baskets", "select * from targets", BOUGHT_TOGETHER, DEFAULT_PARAMS
            )
        finally:
            con.close()
        column = {str(p): i for i, p in enumerate(train.items)}
        lists: dict[str, list[dict]] = {}
        for seed, rec, score in frame.select("product_id", "recommended_product_id", "score").iter_rows():
            lists.setdefault(seed, []).append({**self.product(column[rec]), "score": score})
        return lists


# -------------------------------------------------------------------------------------- cases
def next_item_cases(test: Sessions, max_sessions: int, max_given: int, seed: int) -> list[tuple[list[int], int, float]]:
    """(given item columns in order, the next item's column, the session's start in epoch s)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(test.n_sessions)[:max_sessions])
    cases = []
    for row in rows:
        m = test.positions[row]
        ordered = m.indices[np.argsort(m.data)].tolist()
        for n in range(1, min(len(ordered) - 1, max_given) + 1):
            cases.append((ordered[:n], ordered[n], float(test.starts[row]) / 1e6))
    return cases


def prepare(fitted: Fitted, cases) -> list[dict]:
    """Per case: the session model's pool, the complements, the affinity, the exclusions (what the
    API computes from the visitor's state before blending)."""
    queries = query_matrix([given for given, _, _ in cases], len(fitted.items))
    prepared = []
    for start, scores in fitted.model.score_chunks(queries):
        top = top_k(scores, POOL)
        for j, row in enumerate(top):
            given, target, at = cases[start + j]
            row = row[(row >= 0) & (scores[j, np.maximum(row, 0)] > 0)]
            cart = [str(fitted.items[c]) for c in given]
            part = daypart(at)
            prepared.append(
                {
                    "knn": [fitted.product(int(c)) for c in row],
                    "complements": complement_list(cart, fitted.lists.get),
                    "affinity": category_affinity([fitted.category[c] for c in reversed(given)]),
                    "exclude": set(cart),
                    "lift": {str(fitted.items[c]): float(fitted.lift[c, part]) for c in row},
                    "target": str(fitted.items[target]),
                }
            )
    return prepared


def score(fitted: Fitted, prepared: list[dict], weights: BlendWeights, baseline: np.ndarray | None = None) -> dict:
    """Hit rate and MRR at 10 of the blend with `weights`; with the baseline's hits per case, the
    paired comparison: cases only this variant hits, cases only the baseline hits, and the exact
    two-sided sign test (McNemar) on them (cases of one session are not independent: a rough p)."""
    hits, rr = [], []
    for case in prepared:
        lift = case["lift"]
        items = blend(
            [Ranked(SESSION_KNN, 1.0, case["knn"]), Ranked(CART_COMPLEMENT, weights.complement, case["complements"])],
            exclude=case["exclude"],
            affinity=case["affinity"],
            lift=lambda pid, lift=lift: lift.get(pid, 1.0),
            weights=weights,
            limit=K,
            fill=fitted.popular,
        )
        ids = [i["product_id"] for i in items]
        rank = ids.index(case["target"]) + 1 if case["target"] in ids else 0
        hits.append(rank > 0)
        rr.append(1 / rank if rank else 0.0)
    n = len(prepared)
    hit = np.array(hits, dtype=np.float64)
    # a 95 % interval of the hit rate by the normal approximation (cases of one session are not
    # independent: read it as a rough width, not a test)
    half = 1.96 * float(np.sqrt(hit.mean() * (1 - hit.mean()) / n)) if n else float("nan")
    out = {"hit_rate_at_10": float(hit.mean()) if n else float("nan"), "ci95_half_width": half,
           "mrr_at_10": float(np.mean(rr)) if n else float("nan"), "cases": n}  # fmt: skip
    if baseline is not None:
        won, lost = int((hit.astype(bool) & ~baseline).sum()), int((~hit.astype(bool) & baseline).sum())
        p = binomtest(min(won, lost), won + lost, 0.5).pvalue if won + lost else 1.0
        out |= {"hits_gained": won, "hits_lost": lost, "sign_test_p": float(p)}
    out["_hits"] = hit.astype(bool)
    return out


def choose(fitted: Fitted, prepared: list[dict]) -> tuple[BlendWeights, list[dict]]:
    tried = []
    for c, g, t in itertools.product(GRID["complement"], GRID["category"], GRID["time_of_day"]):
        weights = BlendWeights(complement=c, category=g, time_of_day=t)
        result = score(fitted, prepared, weights)
        result.pop("_hits")
        tried.append({"complement": c, "category": g, "time_of_day": t, **result})
    # best hit rate, then MRR, then the smaller weights (the simpler blend)
    best = max(
        tried,
        key=lambda r: (r["hit_rate_at_10"], r["mrr_at_10"], -(r["complement"] + r["category"] + r["time_of_day"])),
    )
    return BlendWeights(best["complement"], best["category"], best["time_of_day"]), tried


def run_dataset(frame: pl.DataFrame, categories: dict[str, str], args) -> dict:
    sessions = sessions_from_events(frame, "session", "item", "time")
    split = make_split(sessions, 0.1)
    validation = make_split(split.train, 0.1)
    out: dict = {"split": split_summary(split), "validation_split": split_summary(validation)}
    known = [str(p) for p in split.train.items if categories.get(str(p)) is not None]
    out["items_with_a_category"] = f"{len(known)} of {split.train.n_items}"

    started = time.perf_counter()
    fitted = Fitted(validation.train, categories)
    prepared = prepare(fitted, next_item_cases(validation.test, args.max_sessions, args.max_given, SEED))
    weights, tried = choose(fitted, prepared)
    out["validation"] = {"cases": len(prepared), "grid": tried, "chosen": weights.__dict__}
    out["validation_seconds"] = round(time.perf_counter() - started, 1)

    started = time.perf_counter()
    fitted = Fitted(split.train, categories)
    prepared = prepare(fitted, next_item_cases(split.test, args.max_sessions, args.max_given, SEED + 1))
    variants = {
        "(a) session recommendations alone": BlendWeights(0.0, 0.0, 0.0),
        "(b) blend, chosen weights": weights,
        "cart complements only": BlendWeights(weights.complement or 0.5, 0.0, 0.0),
        "category boost only": BlendWeights(0.0, weights.category or 0.5, 0.0),
        "time of day only": BlendWeights(0.0, 0.0, weights.time_of_day or 0.5),
        "(b') the served defaults": BlendWeights(),
    }
    baseline = score(fitted, prepared, variants["(a) session recommendations alone"])["_hits"]
    out["test"] = {}
    for label, w in variants.items():
        result = score(fitted, prepared, w, None if label.startswith("(a)") else baseline)
        result.pop("_hits")
        out["test"][label] = {"weights": w.__dict__, **result}
    out["test_seconds"] = round(time.perf_counter() - started, 1)
    return out


def markdown(results: dict) -> str:
    lines = ["# Visitor recommendations: the blend against session recommendations alone", ""]
    lines.append("Next-item hit rate at 10, replayed sessions (bench/visitor_blend.py).")
    for name, r in results.items():
        if name == "command":
            continue
        lines.append(f"\n## {name}\n")
        if "test" not in r:
            lines.append(json.dumps(r))
            continue
        lines.append(f"test split: {json.dumps(r['split'])}; items with a category: {r['items_with_a_category']}")
        chosen = r["validation"]["chosen"]
        lines.append(f"\nweights chosen on {r['validation']['cases']} validation cases: {json.dumps(chosen)}\n")
        rows = [
            [
                label,
                f"{m['weights']['complement']}/{m['weights']['category']}/{m['weights']['time_of_day']}",
                f"{m['hit_rate_at_10']:.4f} ± {m['ci95_half_width']:.4f}",
                f"{m['mrr_at_10']:.4f}",
                f"+{m['hits_gained']} / -{m['hits_lost']} (p {m['sign_test_p']:.3f})" if "hits_gained" in m else "",
                m["cases"],
            ]
            for label, m in r["test"].items()
        ]
        header = ["variant", "complement/category/time", "HR@10 (test)", "MRR@10", "hits vs (a)", "cases"]
        lines.append(table(rows, header))
    lines.append(f"\n`{results['command']}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-visitor-blend-") as tmp:
        for name in args.datasets:
            started = time.perf_counter()
            if name in FORMAT_SAMPLES:
                results[name] = format_sample(name, args.data, Path(tmp))
            elif name == "online_retail":
                results[name] = run_dataset(*online_retail(args.data, Path(tmp)), args)
            elif name == "complete_journey":
                results[name] = run_dataset(*complete_journey(args.data), args)
            else:
                raise SystemExit(f"unknown dataset {name!r}; known: {', '.join((*DATASETS, *FORMAT_SAMPLES))}")
            print(f"{name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    results["command"] = "bench/visitor_blend.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
