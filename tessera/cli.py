"""The `tessera` console script."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from tessera.settings import load_settings


def _cmd_generate(args: argparse.Namespace) -> int:
    from tessera.generate import GenerateConfig, generate

    settings = load_settings()
    config = GenerateConfig(
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        end_date=date.fromisoformat(args.end_date),
    )
    result = generate(config, settings.landing_dir, settings.truth_dir)
    print(f"landing files written to {result.landing_dir}")
    for source, n in result.rows.items():
        print(f"  {source:<18} {n:>10,} rows")
    print(f"ground truth (never read by the pipeline) in {result.truth_dir}")
    return 0


def _cmd_online_retail(args: argparse.Namespace) -> int:
    from tessera.online_retail import map_online_retail

    settings = load_settings()
    rows = map_online_retail(args.source, settings.landing_dir)
    print(f"UCI Online Retail mapped onto the landing contract in {settings.landing_dir}")
    for source, n in rows.items():
        print(f"  {source:<18} {n:>10,} rows")
    return 0


def _cmd_segments(args: argparse.Namespace) -> int:
    from tessera.segments import MODEL_FILE, RULES_FILE, SegmentRuleError, write_model

    try:
        path = write_model(args.rules or RULES_FILE, MODEL_FILE)
    except SegmentRuleError as exc:
        print(f"invalid segment rules: {exc}", file=sys.stderr)
        return 2
    print(f"segment rules compiled to {path}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from tessera.run import run_pipeline

    return run_pipeline(job_name=args.job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tessera", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write deterministic demo landing files")
    g.add_argument("--customers", type=int, default=2000)
    g.add_argument("--days", type=int, default=120)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--end-date", default="2026-10-31", help="last day of generated activity")
    g.set_defaults(func=_cmd_generate)

    o = sub.add_parser("online-retail", help="map the UCI Online Retail export onto the landing contract")
    o.add_argument("--source", required=True, help="path to online_retail.parquet")
    o.set_defaults(func=_cmd_online_retail)

    sg = sub.add_parser("segments", help="rule-based segments")
    sg_sub = sg.add_subparsers(dest="segments_command", required=True)
    sc = sg_sub.add_parser("compile", help="validate the rule file and compile it to the dbt model")
    sc.add_argument("--rules", help="rule file (default dbt_project/segments/segment_rules.yml)")
    sc.set_defaults(func=_cmd_segments)

    r = sub.add_parser("run", help="materialize the asset graph in-process and print a summary")
    r.add_argument("--job", default="tessera_all", help="Dagster job to execute")
    r.set_defaults(func=_cmd_run)

    from tessera.identity.cli import add_parser as add_identity_parser

    add_identity_parser(sub)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
