"""Decisioning benchmark: the variant bandit's convergence, and rendering speed (issue 10).

    .venv/bin/python bench/decisioning.py bandit                       # on the demo warehouse (make demo)
    .venv/bin/python bench/decisioning.py render --duckdb PATH         # decide + render on a warehouse

bandit: for every action of the catalogue with two or more variants, the audience of a simulated
day is the number of messages the demo warehouse's decisions send for that action (run `make demo`
first). The action's last variant is given the higher conversion rate; the others share the lower
one. Each round (a day) the pipeline's own Thompson assignment (tessera/decisioning/bandit.py)
picks the variants, outcomes are drawn with the known rates, and the round's counts update the
posterior. Reported over `--seeds` seeds: the best variant's share of the last round, the share
over the whole horizon, and the first round from which it keeps >= 80 %.

render: on a warehouse with the marts and ML outputs (the 1m bench warehouse; work on a copy),
runs the decisions (prior bandit state) and then renders every message to send, timing both, with
the pipeline's memory limit, threads and temp directory (TESSERA_DUCKDB_*). Rendering includes the DuckDB
queries of the render context, Jinja2, hashing and writing messages and bodies back.

Results: bench/results/decisioning_<part>.json, and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tessera.markdown import table  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def demo_audiences(duckdb_path: Path, catalogue) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        rows = dict(
            con.execute(
                "select action_id, count(*) from decisioning.decisions where decision = 'send' group by action_id"
            ).fetchall()
        )
    finally:
        con.close()
    return {a.id: int(rows.get(a.id, 0)) for a in catalogue.actions if len(a.variants) >= 2}


def bench_bandit(args) -> dict:
    from tessera.decisioning.bandit import simulate
    from tessera.decisioning.catalogue import load_catalogue
    from tessera.settings import load_settings

    catalogue = load_catalogue()
    audiences = demo_audiences(load_settings().duckdb_path, catalogue)
    out = {"rounds": args.rounds, "seeds": args.seeds, "low_rate": args.low, "high_rate": args.high, "actions": {}}
    for action_id, audience in audiences.items():
        variants = tuple(v.id for v in catalogue.action(action_id).variants)
        rates = tuple([args.low] * (len(variants) - 1) + [args.high])
        last, overall, reached = [], [], []
        for seed in range(args.seeds):
            sim = simulate(variants, rates, audience, args.rounds, seed)
            last.append(sim.share_best_by_round[-1])
            overall.append(statistics.fmean(sim.share_best_by_round))
            reached.append(sim.first_round_at(0.8))
        out["actions"][action_id] = {
            "variants": variants,
            "rates": rates,
            "messages_per_round": audience,
            "last_round_share_median": statistics.median(last),
            "last_round_share_min": min(last),
            "horizon_share_median": statistics.median(overall),
            "seeds_at_80_by_the_end": sum(r is not None for r in reached),
            "round_at_80_median": statistics.median([r for r in reached if r is not None]) if any(reached) else None,
            "round_at_80_max": max((r for r in reached if r is not None), default=None),
        }
    return out


def bandit_markdown(r: dict) -> str:
    headers = [
        "action", "variants", "messages a round", "best share, last round (median / min)", "best share over the horizon (median)",
        "seeds holding >= 80 %", "round it holds >= 80 % from (median / max)",
    ]  # fmt: skip
    rows = [
        (action_id, len(a["variants"]), a["messages_per_round"], f"{a['last_round_share_median']:.1%} / {a['last_round_share_min']:.1%}",
         f"{a['horizon_share_median']:.1%}", f"{a['seeds_at_80_by_the_end']}/{r['seeds']}",
         f"{a['round_at_80_median']} / {a['round_at_80_max']}")
        for action_id, a in r["actions"].items()
    ]  # fmt: skip
    said = (
        f"Bandit on demo audiences: {r['rounds']} daily rounds, {r['seeds']} seeds, "
        f"best variant {r['high_rate']:.0%} vs {r['low_rate']:.0%}."
    )
    return said + "\n\n" + table(rows, headers, ("left",) + ("right",) * 6)


def bench_render(args) -> dict:
    import duckdb

    from tessera.decisioning import bandit, decide
    from tessera.decisioning.catalogue import load_catalogue
    from tessera.decisioning.render import render_messages
    from tessera.privacy import pseudonym
    from tessera.settings import load_settings

    settings = load_settings()
    catalogue = load_catalogue()
    # as the pipeline's steps open it (orchestration/resources.py)
    con = duckdb.connect(
        str(args.duckdb),
        config={
            "memory_limit": settings.duckdb_memory_limit,
            "threads": settings.duckdb_threads,
            "temp_directory": str(settings.duckdb_temp_dir),
        },
    )
    con.execute("set TimeZone = 'UTC'")
    pseudonym.install(con, settings.pseudonym_salt)
    posteriors = {a.id: bandit.empty(tuple(v.id for v in a.variants)) for a in catalogue.actions}
    started = time.perf_counter()
    decide.decide(con, catalogue, posteriors, 1, settings.seed, settings.holdout_share)
    decided = time.perf_counter() - started
    decisions = con.execute(
        "select count(*), count(*) filter (where decision = 'send') from decisioning.decisions"
    ).fetchall()[0]
    started = time.perf_counter()
    rendered = render_messages(
        con, catalogue, Path(args.preview_dir) if args.preview_dir else None, workers=settings.render_workers
    )
    seconds = time.perf_counter() - started
    bodies_mb = con.execute("select sum(strlen(body)) / 1e6 from decisioning.messages").fetchall()[0][0]
    con.close()
    return {
        "duckdb": str(args.duckdb),
        "decisions": decisions[0],
        "sends": decisions[1],
        "decide_seconds": round(decided, 1),
        "messages": rendered.messages,
        "distinct_bodies": rendered.bodies,
        "bodies_mb": round(bodies_mb or 0, 1),
        "render_seconds": round(seconds, 1),
        "render_workers": settings.render_workers,
        "messages_per_second": round(rendered.messages / seconds),
        "seconds_per_million": round(seconds / rendered.messages * 1e6, 1) if rendered.messages else None,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        # this process only: a spawned worker's own high-water mark includes the moment between
        # fork and exec, when it still maps this process's pages. `make bench` samples the RSS of
        # the whole process tree instead (docs/scaling.md).
        "per_variant": rendered.per_variant,
    }


def render_markdown(r: dict) -> str:
    measures = [
        ("decisions (customer x channel)", f"{r['decisions']:,}"),
        ("messages to send", f"{r['sends']:,}"),
        ("deciding", f"{r['decide_seconds']} s"),
        ("messages rendered", f"{r['messages']:,}"),
        ("distinct bodies", f"{r['distinct_bodies']:,}"),
        ("bodies stored", f"{r['bodies_mb']} MB"),
        (f"rendering ({r['render_workers']} worker processes)", f"{r['render_seconds']} s"),
        ("messages per second", f"{r['messages_per_second']:,}"),
        ("seconds per 1,000,000 messages", r["seconds_per_million"]),
        ("peak RSS (this process, not the render workers)", f"{r['peak_rss_gb']} GB"),
    ]
    return table(measures, ["measure", "value"], ("left", "right"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    b = sub.add_parser("bandit")
    b.add_argument("--rounds", type=int, default=28, help="simulated days")
    b.add_argument("--seeds", type=int, default=20)
    b.add_argument("--low", type=float, default=0.05, help="conversion rate of the other variants")
    b.add_argument("--high", type=float, default=0.07, help="conversion rate of the best variant")
    r = sub.add_parser("render")
    r.add_argument("--duckdb", type=Path, required=True, help="a warehouse copy: decisioning tables are replaced")
    r.add_argument("--preview-dir", help="also write previews here")
    args = parser.parse_args()
    result = bench_bandit(args) if args.part == "bandit" else bench_render(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"decisioning_{args.part}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(bandit_markdown(result) if args.part == "bandit" else render_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
