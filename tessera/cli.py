"""The `tessera` console script.

A user error (a missing or unreadable file, a bad option value, a setting that cannot be used) is
one line on stderr and exit code 2; `tessera --debug ...` shows its traceback (tessera/errors.py).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from tessera import markdown
from tessera.errors import UserError, one_line, user_error_types
from tessera.settings import load_settings


def _cmd_generate(args: argparse.Namespace) -> int:
    from tessera.landing.generate import GenerateConfig, generate

    settings = load_settings()
    try:
        config = GenerateConfig(
            customers=args.customers,
            days=args.days,
            seed=args.seed,
            end_date=args.end_date,
            products=args.products,
            session_scale=args.session_scale,
            shard=args.shard,
        )
    except ValueError as exc:  # GenerateConfig's validation: a count or scale out of range
        raise UserError(str(exc)) from exc
    result = generate(config, settings.landing_dir, settings.truth_dir)
    print(f"landing files written to {result.landing_dir}")
    for source, n in result.rows.items():
        print(f"  {source:<18} {n:>10,} rows")
    print(f"ground truth (never read by the pipeline) in {result.truth_dir}")
    return 0


def _cmd_built_in_mapping(args: argparse.Namespace) -> int:
    """`tessera online-retail` and `tessera complete-journey`: `tessera sources map` with their
    built-in mapping (config/mappings)."""
    from tessera.landing.cli import cmd_map

    return cmd_map(argparse.Namespace(mapping=args.mapping, input=[str(args.source)], landing=None))


def _cmd_segments(args: argparse.Namespace) -> int:
    from tessera.segments.rules import MODEL_FILE, RULES_FILE, SegmentRuleError, write_model

    rules = Path(args.rules) if args.rules else RULES_FILE
    if not rules.is_file():
        raise UserError(f"--rules {rules}: no such file")
    try:
        path = write_model(rules, MODEL_FILE)
    except SegmentRuleError as exc:
        raise UserError(f"invalid segment rules: {exc}") from exc
    print(f"segment rules compiled to {path}")
    return 0


def _cmd_decisioning_validate(args: argparse.Namespace) -> int:
    from tessera.decisioning.catalogue import CatalogueError, load_catalogue

    try:
        catalogue = load_catalogue(args.file)
    except CatalogueError as exc:
        raise UserError(f"invalid action catalogue: {exc}") from exc
    print(f"{catalogue.path}: {len(catalogue.actions)} actions, every template valid")
    for a in catalogue.actions:
        kind = "explicit rule" if a.explicit else "weighted score"
        if a.realtime:
            kind = f"realtime {a.trigger['signal']} {a.trigger['threshold']}"
        variants = ", ".join(v.id for v in a.variants)
        print(f"  {a.id:<28} {a.channel:<10} priority {a.priority:>3}  {kind:<14} variants: {variants}")
    return 0


def _cmd_decisioning_simulate(args: argparse.Namespace) -> int:
    from tessera.decisioning.bandit import simulate

    rates = args.rates
    names = tuple(f"variant_{i + 1}" for i in range(len(rates)))
    sim = simulate(names, rates, args.audience, args.rounds, args.seed)
    best = names[sim.best]
    print(f"{len(rates)} variants, conversion rates {rates}; {args.audience} messages a round, {args.rounds} rounds")
    for i, share in enumerate(sim.share_best_by_round, 1):
        print(f"  round {i:>3}: {share:6.1%} of messages to {best}")
    reached = sim.first_round_at(0.8)
    print(f"{best} holds >= 80 % of traffic from round {reached}" if reached else f"{best} never held >= 80 %")
    return 0 if reached else 1


def _cmd_recommend_evaluate(args: argparse.Namespace) -> int:
    import json

    from ml.rec_evaluation import (
        MODELS,
        PRIMARY_SLICE,
        SLICES,
        evaluate_split,
        evaluation_as_of,
        explicit_split,
        flatten_metrics,
        metric_table,
        time_split,
    )
    from ml.rec_features import report_lines

    models = known_names("--models", args.models, MODELS)
    settings = load_settings() if args.experiment else None  # the configuration before the work
    interactions = read_interactions(args.interactions, "--interactions", timed=args.holdout_days is not None)
    test = read_input_table(args.test, "--test", ("customer_key", "product_id")) if args.test else None
    data, choices = typed_feature_tables(
        args, interactions, evaluation_as_of(interactions, None if test is not None else args.holdout_days, test), test
    )
    params = recommender_params(args)
    try:
        split = explicit_split(data, test) if test is not None else time_split(data, args.holdout_days)
    except ValueError as exc:  # a holdout without purchases, a test file naming no known customer
        raise UserError(f"{args.test or args.interactions}: {exc}") from exc
    metrics = evaluate_split(data, split, params, models)
    if choices:
        print("features:\n" + "\n".join(f"  {line}" for line in report_lines(choices)) + "\n")
    print(f"{split.describe()}; k = {params.k}; primary slice: {PRIMARY_SLICE}")
    for slice_name in SLICES:
        print(f"\n### {slice_name}{' (primary)' if slice_name == PRIMARY_SLICE else ''}\n")
        print(metric_table(metrics, params.k, slice_name))
    report = [c.as_dict() for c in choices]
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(
                {"split": split.describe(), "params": params.as_dict(), "features": report, "metrics": metrics},
                fh,
                indent=2,
            )
        print(f"\nmetrics written to {args.out}")
    if args.experiment:
        from ml.rec_features import report_params
        from ml.tracking import log_evaluation_run
        from tessera.settings import mlflow_artifact_root

        run_id = log_evaluation_run(
            settings.mlflow_tracking_uri,
            args.experiment,
            mlflow_artifact_root(settings),
            {**params.as_dict(), **split.describe(), "models": ",".join(models), **report_params(choices)},
            flatten_metrics(metrics),
            {"features": report},
        )
        print(f"MLflow run {run_id} in experiment '{args.experiment}' ({settings.mlflow_tracking_uri})")
    return 0


def feature_typing(args: argparse.Namespace):
    """The typing of the feature columns the options ask for (ml.rec_features.TypingOptions)."""
    from ml.rec_features import TypingOptions

    return TypingOptions(
        delimiter=args.feature_delimiter,
        drop=frozenset(args.drop_feature or ()),
        categorical=frozenset(args.categorical_feature or ()),
    )


def typed_feature_tables(args: argparse.Namespace, interactions, as_of, test=None):
    """`recommend evaluate|tune`: the RecData of the files the options name, with the feature
    columns typed as the options ask (ml.rec_features), and the report of each column's choice; a
    UserError naming every refused feature column."""
    from ml.rec_evaluation import typed_tables
    from ml.rec_features import FeatureTypeError

    typing = feature_typing(args)
    users, items = feature_tables(args)
    try:
        return typed_tables(
            interactions,
            users,
            items,
            extra_interactions=test,
            as_of=as_of,
            typing=typing,
            sources=(str(args.user_features), str(args.item_features)),
        )
    except FeatureTypeError as exc:
        raise UserError(f"feature column(s) refused: {exc}") from exc


def read_input_table(path: str, option: str, columns: tuple[str, ...] = ()):
    """The CSV or Parquet file an option names (ml.rec_evaluation.read_table), or a UserError
    naming the option, the file and what is wrong: missing, unreadable, or without `columns`."""
    from ml.rec_evaluation import read_table

    if not Path(path).is_file():
        raise UserError(f"{option} {path}: no such file")
    try:
        table = read_table(path)
    except (ValueError, OSError) as exc:  # not CSV or Parquet, a parser's or Arrow's refusal, not readable
        raise UserError(f"{option} {path}: cannot be read: {one_line(exc)}") from exc
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise UserError(
            f"{option} {path}: no column {', '.join(missing)} (it has: {', '.join(map(str, table.columns))})"
        )
    return table


def read_interactions(path: str, option: str, timed: bool):
    """The interactions file; a time split (--holdout-days) needs its occurred_at."""
    return read_input_table(path, option, ("customer_key", "product_id") + (("occurred_at",) if timed else ()))


def feature_tables(args: argparse.Namespace):
    """The --user-features and --item-features tables (None where not given)."""
    return (
        read_input_table(args.user_features, "--user-features", ("customer_key",)) if args.user_features else None,
        read_input_table(args.item_features, "--item-features", ("product_id",)) if args.item_features else None,
    )


def known_names(option: str, value: str | None, known) -> list[str]:
    """A comma-separated option's names, each one of `known` (all of them when not given)."""
    if not value:
        return list(known)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UserError(f"{option} {value!r}: unknown {', '.join(unknown) or 'empty list'}; one of {', '.join(known)}")
    return names


def _cmd_recommend_tune(args: argparse.Namespace) -> int:
    import json
    import time

    from ml.rec_features import FeatureTypeError, report_lines, report_params
    from ml.rec_tuning import DEFAULT_FAMILIES, FAMILY_SPACES, TuningError, tune, tuning_splits
    from tessera.settings import load_settings, mlflow_artifact_root

    started = time.perf_counter()
    settings = load_settings()
    families = (
        known_names("--families", args.families, list(FAMILY_SPACES)) if args.families else list(DEFAULT_FAMILIES)
    )
    params = recommender_params(args)  # the base of every trial: k, seed and the family defaults
    # the validation split is carved by time from the training interactions: occurred_at always
    interactions = read_interactions(args.interactions, "--interactions", timed=True)
    test = read_input_table(args.test, "--test", ("customer_key", "product_id")) if args.test else None
    users, items = feature_tables(args)
    try:
        splits = tuning_splits(
            interactions,
            test=test,
            holdout_days=args.holdout_days,
            validation_days=args.validation_days,
            user_features=users,
            item_features=items,
            typing=feature_typing(args),
            sources=(str(args.user_features), str(args.item_features)),
        )
    except FeatureTypeError as exc:
        raise UserError(f"feature column(s) refused: {exc}") from exc
    except ValueError as exc:  # a split or carve-out without data (TuningError among them)
        raise UserError(str(exc)) from exc
    for line in report_lines(splits.features):
        print(f"feature {line}")
    print(f"test: {splits.test.describe()}\nvalidation (carved from training): {splits.validation.describe()}")
    if not args.quiet:
        print(f"[{time.perf_counter() - started:.0f} s] splits ready; the trials start", file=sys.stderr, flush=True)
    try:
        result = tune(
            splits,
            params,
            families,
            tracking_uri=settings.mlflow_tracking_uri,
            experiment=args.experiment,
            artifact_root=mlflow_artifact_root(settings),
            max_trials=args.max_trials,
            time_budget=args.time_budget,
            progress=None if args.quiet else sys.stderr,
            search_params=report_params(splits.features),
            search_dicts={"feature_report.json": {"features": [c.as_dict() for c in splits.features]}},
        )
    except TuningError as exc:
        raise UserError(str(exc)) from exc
    found, k = result.search, params.k
    budget = f"; stopped by the {found.stopped_by}" if found.stopped_by else ""
    print(
        f"\n{len(found.results)} of {found.planned} planned trials ran in {found.seconds:.0f} s{budget} "
        f"(MLflow experiment '{args.experiment}', parent run {result.parent_run_id}, {settings.mlflow_tracking_uri})"
    )
    by_number = {r.trial.number: r for r in found.results}
    rows = []
    for number, on_test in result.test.items():
        r = by_number[number]
        rows.append(
            (", ".join(result.roles[number]), r.trial.label(),
             f"{r.metrics[f'precision_at_{k}']:.4f}", f"{r.metrics[f'ndcg_at_{k}']:.4f}",
             f"{on_test.get(f'precision_at_{k}', float('nan')):.4f}", f"{on_test.get(f'ndcg_at_{k}', float('nan')):.4f}")
        )  # fmt: skip
    headers = ["role", "configuration", f"val P@{k}", f"val NDCG@{k}", f"test P@{k}", f"test NDCG@{k}"]
    print(markdown.table(rows, headers, ("left", "left") + ("right",) * 4))
    print(
        f"\nwinner: {result.winner.trial.label()} (best warm NDCG@{k} on validation). The test was not used to "
        "choose: every configuration above was refitted on the full training data and scored on it once, after "
        f"the choice. Whole run {result.seconds:.0f} s."
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result.as_dict(), indent=2, default=str))
        print(f"results written to {args.out}")
    return 0


def pipeline_jobs() -> dict[str, str]:
    """The jobs `tessera run --job` takes, by name, with the first sentence of their description
    (orchestration/definitions.py; importing it takes seconds, so only `run` and `run --help` ask)."""
    from tessera.settings import DBT_PROJECT_DIR

    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    if not manifest.is_file():  # the dbt assets are built from it
        raise UserError(f"no dbt manifest at {manifest}: run `make manifest` (dbt parse) once in this checkout")
    from orchestration.definitions import defs

    return {job.name: (job.description or "").split(". ")[0].rstrip(".") for job in defs.jobs}


class _RunHelp(argparse.Action):
    """`tessera run --help`: the help, with the jobs read from the Definitions only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        try:
            jobs = pipeline_jobs()
        except UserError as exc:  # no dbt manifest yet: the help is still the help
            parser.exit(message=f"\njobs (--job): cannot be listed: {exc}\n")
        print("\njobs (--job):\n" + "\n".join(f"  {name:<22} {text}" for name, text in jobs.items()))
        parser.exit()


def _cmd_run(args: argparse.Namespace) -> int:
    from tessera.settings import preflight

    preflight(load_settings())  # the configuration first: every problem at once, before any work
    jobs = pipeline_jobs()
    if args.job not in jobs:
        raise UserError(f"--job {args.job!r}: no such job; the jobs are {', '.join(jobs)} (tessera run --help)")
    from orchestration.run import run_pipeline

    # past the checks: an error out of the run itself is not the operator's, it keeps its traceback
    args.checked = True
    return run_pipeline(job_name=args.job, full_refresh=args.full_refresh, verbose=args.verbose)


def _cmd_serve(args: argparse.Namespace) -> int:
    from tessera.serving import serve
    from tessera.settings import preflight

    settings = load_settings()
    preflight(settings, purpose="serve", publish_dir=args.publish_dir)
    serve(
        args.publish_dir or settings.publish_dir,
        args.host or settings.serve_host,
        args.port or settings.serve_port,
        settings.serve_reload_seconds if args.reload_seconds is None else args.reload_seconds,
    )
    return 0


# --- real time (docs/realtime.md): the local Redis, and the state worker -------------------------


def _cmd_realtime_redis(args: argparse.Namespace) -> int:
    """Start a Redis daemon at TESSERA_REDIS_URL when it is local and not answering."""
    from tessera.realtime.redis_server import ensure_running
    from tessera.realtime.store import redis_location
    from tessera.settings import load_realtime_settings

    settings, realtime = load_settings(), load_realtime_settings()
    data_dir = args.data_dir or settings.data_dir / "realtime" / "redis"
    what = ensure_running(realtime.redis_url, data_dir, realtime.redis_appendfsync)  # RedisUnavailable: exit 2
    where = f"; data in {data_dir}" if what == "started" else ""
    print(f"Redis at {redis_location(realtime.redis_url)}: {what}{where}")
    return 0


def _cmd_realtime_worker(args: argparse.Namespace) -> int:
    """The state worker until SIGINT/SIGTERM; then it writes what it holds and exits."""
    import logging
    import signal
    import threading

    import redis

    from tessera.realtime.store import connect
    from tessera.realtime.worker import StateWorker
    from tessera.settings import load_realtime_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings, realtime = load_settings(), load_realtime_settings()
    store = connect(realtime, settings.pseudonym_salt, socket_timeout=None)
    try:
        store.client.ping()  # Redis first: the worker would otherwise wait on it without a word
    except redis.ConnectionError as exc:
        raise UserError(f"Redis at {store.location} does not answer (TESSERA_REDIS_URL): {one_line(exc)}") from exc
    worker = StateWorker(
        store.stream,
        store.state,
        store.suppression,
        settings.landing_dir,
        consumer=args.consumer,
        consent_category=realtime.consent_category,
        flush_max_events=realtime.flush_max_events,
        flush_max_seconds=realtime.flush_max_seconds,
        reclaim_idle_ms=realtime.reclaim_idle_ms,
        trim_groups=realtime.realtime_trim_groups,
        landed_ttl_seconds=realtime.dedup_ttl_seconds,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"state worker {worker.consumer}: stream {realtime.realtime_stream_key} at {store.location} -> "
        f"session state, landing files in {settings.landing_dir / 'events'}",
        flush=True,
    )
    worker.run(stop)
    print(f"state worker stopped: {worker.summary()}", flush=True)
    return 0


def add_realtime_parser(sub) -> None:
    rt = sub.add_parser("realtime", help="the real-time side: local Redis, state worker, triggers (docs/realtime.md)")
    rt_sub = rt.add_subparsers(dest="realtime_command", required=True)
    rr = rt_sub.add_parser("redis", help="start a local Redis daemon at TESSERA_REDIS_URL unless one answers")
    rr.add_argument("--data-dir", type=Path, help="Redis's own files (default: $TESSERA_DATA_DIR/realtime/redis)")
    rr.set_defaults(func=_cmd_realtime_redis)
    rw = rt_sub.add_parser("worker", help="stream -> session state and micro-batch landing files, until stopped")
    rw.add_argument("--consumer", help="consumer name in the group 'state' (default: state-<hostname>)")
    rw.set_defaults(func=_cmd_realtime_worker)
    # triggers and the trigger audience (docs/realtime_triggers.md)
    from tessera.realtime.trigger_cli import add_commands as add_trigger_commands

    add_trigger_commands(rt_sub)


# each option of `recommend evaluate` / `tune` and the RecommenderParams field it sets; an option
# not given keeps the field's default, the tuned one (the Dagster config reads the same)
RECOMMEND_OPTIONS = {
    "loss": "loss",
    "components": "no_components",
    "learning_rate": "learning_rate",
    "epochs": "epochs",
    "half_life_days": "half_life_days",
    "feature_weight": "feature_weight",
    "k": "k",
    "seed": "seed",
}
TUNED = "default: the tuned RecommenderParams value"


def recommender_params(args: argparse.Namespace):
    """The RecommenderParams the options ask for: the defaults, but for the options given."""
    from ml.recommender import RecommenderParams

    given = {field: getattr(args, option, None) for option, field in RECOMMEND_OPTIONS.items()}
    try:
        return RecommenderParams(**{field: value for field, value in given.items() if value is not None})
    except ValueError as exc:  # RecommenderParams' validation names the field and the value
        raise UserError(str(exc)) from exc


def add_feature_options(parser: argparse.ArgumentParser) -> None:
    """The feature tables of `recommend evaluate|tune` and how their columns are typed."""
    parser.add_argument("--user-features", help="customer_key plus feature columns (CSV or Parquet)")
    parser.add_argument("--item-features", help="product_id plus feature columns (CSV or Parquet)")
    parser.add_argument(
        "--drop-feature",
        action="append",
        metavar="COLUMN",
        help="leave this feature column out (free text, an identifier); repeat for more",
    )
    parser.add_argument(
        "--categorical-feature",
        action="append",
        metavar="COLUMN",
        help="a numeric column that is a code (a manufacturer id): one feature per value, not quantile buckets",
    )
    parser.add_argument(
        "--feature-delimiter", default="|", help="text holding it is a list, one feature per value (default: |)"
    )


def add_recommend_parser(sub) -> None:
    """`tessera recommend evaluate|tune`: the recommender outside Dagster."""
    rec = sub.add_parser("recommend", help="the recommender outside Dagster")
    rec_sub = rec.add_subparsers(dest="recommend_command", required=True)
    ev = rec_sub.add_parser(
        "evaluate",
        help="LightFM hybrid vs baselines on a time split or an explicit train/test pair",
        description="Interactions: customer_key, product_id[, interaction_type (view|cart|purchase), occurred_at]. "
        "Feature tables: customer_key / product_id plus feature columns, each typed from its data (ml/rec_features.py): "
        "text categorical, list or delimited text multi-hot, numbers in quantile buckets, free text refused; with an "
        "as_of_date column a table is point-in-time and the rows as of the holdout start are used. CSV or Parquet.",
    )
    ev.add_argument("--interactions", required=True, help="training interactions (all of them with --holdout-days)")
    add_feature_options(ev)
    split = ev.add_mutually_exclusive_group(required=True)
    split.add_argument("--holdout-days", type=_positive_int, help="test on purchases in the last N days")
    split.add_argument("--test", help="explicit test file (customer_key, product_id)")
    ev.add_argument("--k", type=_positive_int, help=TUNED)
    ev.add_argument("--models", help="comma-separated subset of the models (default: all)")
    ev.add_argument("--loss", choices=["warp", "bpr", "warp-kos", "logistic"], help=TUNED)
    ev.add_argument("--components", type=_positive_int, help=TUNED)
    ev.add_argument("--learning-rate", type=_positive_float, help=TUNED)
    ev.add_argument("--epochs", type=_positive_int, help=TUNED)
    ev.add_argument("--half-life-days", type=float, help=f"time decay of interaction weights (0 = off); {TUNED}")
    ev.add_argument(
        "--feature-weight", type=_positive_float, help=f"metadata features vs the identity feature; {TUNED}"
    )
    ev.add_argument("--seed", type=int, help=TUNED)
    ev.add_argument("--out", help="write all metrics (and each feature column's typing) as JSON")
    ev.add_argument(
        "--experiment", help="also log the run (params, the feature typing, metrics) to this MLflow experiment"
    )
    ev.set_defaults(func=_cmd_recommend_evaluate)

    tu = rec_sub.add_parser(
        "tune",
        help="tune every family on a validation split carved from training; test the winner once",
        description="Trials: each family's default configuration first, then its grid in a seeded random order. "
        "Every trial is fitted on training minus its last --validation-days and scored there; the best warm "
        "NDCG@k on validation wins (never worse than a default: the defaults are trials). The winner, the "
        "defaults and each family's best are then refitted on all training data and scored on the test once. "
        "The defaults always run, whatever --max-trials / --time-budget say.",
    )
    tu.add_argument("--interactions", required=True, help="training interactions (all of them with --holdout-days)")
    add_feature_options(tu)
    tu_split = tu.add_mutually_exclusive_group(required=True)
    tu_split.add_argument("--test", help="explicit test file (customer_key, product_id)")
    tu_split.add_argument("--holdout-days", type=_positive_int, help="test on purchases in the last N days")
    tu.add_argument(
        "--validation-days",
        type=int,  # 0 or less: refused by the split with its reason
        help="validation = the last N days of the training data (default: --holdout-days, or 21 with --test)",
    )
    tu.add_argument(
        "--families",
        help="comma-separated families (default: lightfm_hybrid,ease,als,item_item,recently_popular,most_popular)",
    )
    tu.add_argument("--max-trials", type=int, help="at most N trials, the defaults included (default: the whole grid)")
    tu.add_argument(
        "--time-budget", type=_positive_float, help="start no new search trial after SECONDS (the defaults always run)"
    )
    tu.add_argument("--k", type=_positive_int, help=TUNED)
    tu.add_argument("--seed", type=int, help=f"models and the trial order; {TUNED}")
    tu.add_argument(
        "--experiment", default="tessera-recommender-tuning", help="MLflow experiment of the parent run and its trials"
    )
    tu.add_argument("--quiet", action="store_true", help="no progress lines on stderr (one per trial by default)")
    tu.add_argument("--out", help="write every trial, the winner and the test figures as JSON")
    tu.set_defaults(func=_cmd_recommend_tune)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default when it has one the help does not already state
    (argparse.ArgumentDefaultsHelpFormatter would also print "(default: None)" and "(default: False)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and not isinstance(action.default, list)
        if shown and action.option_strings and "default" not in text and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """tessera's parsers: the help formatter above, and a usage error in one line (exit code 2)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date as YYYY-MM-DD") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be above 0")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is 1 to 65535")
    return value


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(r) for r in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated numbers, e.g. 0.05,0.08") from None
    if len(rates) < 2 or not all(0 <= r <= 1 for r in rates):
        raise argparse.ArgumentTypeError(f"{text!r}: two or more conversion rates, each between 0 and 1")
    return rates


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tessera")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tessera",
        description="tessera, the customer-data platform, from the command line. A user error (a missing or "
        "unreadable file, a bad option value, a setting that cannot be used) is one line on stderr and exit code 2; "
        "--debug shows its traceback. `tessera COMMAND --help` for each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of a user error (a bad file, option or setting); taken anywhere on the line",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser(
        "generate",
        help="write deterministic demo landing files",
        description="Write a demo shop's landing files into TESSERA_LANDING_DIR and its ground truth beside them.",
    )
    g.add_argument("--customers", type=int, default=2000, help="people in the shop")
    g.add_argument("--days", type=int, default=120, help="days of activity, up to --end-date")
    g.add_argument("--seed", type=int, default=42, help="the generator's seed: the same seed, the same files")
    g.add_argument("--end-date", type=_iso_date, default="2026-10-31", help="last day of generated activity")
    g.add_argument("--products", type=int, help="catalogue size (default: customers / 8, 60 to 50,000)")
    g.add_argument("--session-scale", type=float, default=1.0, help="multiplies everyone's web sessions")
    g.add_argument(
        "--shard", type=int, default=0, help="add shard k > 0 of --customers more people beside shard 0 (make bench)"
    )
    g.set_defaults(func=_cmd_generate)

    o = sub.add_parser("online-retail", help="map the UCI Online Retail export (either year) onto the landing contract")
    o.add_argument("--source", required=True, type=Path, help="the export: online_retail.parquet or a CSV of it")
    o.set_defaults(func=_cmd_built_in_mapping, mapping="online_retail")

    cj = sub.add_parser("complete-journey", help="map The Complete Journey export onto the landing contract")
    cj.add_argument(
        "--source-dir",
        dest="source",
        required=True,
        type=Path,
        help="folder with transactions(_sample).parquet, products.parquet and demographics.parquet",
    )
    cj.set_defaults(func=_cmd_built_in_mapping, mapping="complete_journey")

    from tessera.landing.cli import add_parser as add_sources_parser

    add_sources_parser(sub)

    sg = sub.add_parser("segments", help="rule-based segments")
    sg_sub = sg.add_subparsers(dest="segments_command", required=True)
    sc = sg_sub.add_parser("compile", help="validate the rule file and compile it to the dbt model")
    sc.add_argument("--rules", type=Path, help="rule file (default: config/segment_rules.yml)")
    sc.set_defaults(func=_cmd_segments)

    dc = sub.add_parser("decisioning", help="the action catalogue and the variant bandit")
    dc_sub = dc.add_subparsers(dest="decisioning_command", required=True)
    dv = dc_sub.add_parser("validate", help="validate the action catalogue and every template it names")
    dv.add_argument("--file", type=Path, help="catalogue (default: TESSERA_ACTIONS_FILE or config/actions.yml)")
    dv.set_defaults(func=_cmd_decisioning_validate)
    ds = dc_sub.add_parser("simulate", help="the Thompson bandit against known conversion rates")
    ds.add_argument(
        "--rates", type=_rates, default="0.05,0.05,0.08", help="comma-separated conversion rate of each variant"
    )
    ds.add_argument("--audience", type=_positive_int, default=1000, help="messages per round")
    ds.add_argument("--rounds", type=_positive_int, default=28, help="rounds (days) of sends")
    ds.add_argument("--seed", type=int, default=42, help="seed of the simulated conversions and the bandit's draws")
    ds.set_defaults(func=_cmd_decisioning_simulate)

    add_recommend_parser(sub)

    sv = sub.add_parser("serve", help="the read-only API over the current published snapshots")
    sv.add_argument("--host", help="address to listen on (default: TESSERA_SERVE_HOST or 127.0.0.1)")
    sv.add_argument("--port", type=_port, help="port to listen on (default: TESSERA_SERVE_PORT or 8000)")
    sv.add_argument(
        "--publish-dir", type=Path, help="the published snapshots (default: TESSERA_PUBLISH_DIR or data/publish)"
    )
    sv.add_argument(
        "--reload-seconds",
        type=float,
        help="look for new versions this often; 0 never (default: TESSERA_SERVE_RELOAD_SECONDS or 60)",
    )
    sv.set_defaults(func=_cmd_serve)

    r = sub.add_parser(
        "run",
        help="materialize the asset graph in-process and print a summary",
        description="Run a Dagster job of the asset graph in this process (the configuration is checked first), "
        "then print what the warehouse holds, the checks and the models. Exit code 0 when the run succeeded, "
        "1 when a step or a blocking check failed, 2 for a bad option or configuration.",
        add_help=False,
    )
    r.add_argument("-h", "--help", action=_RunHelp, help="show this help, and the jobs, and exit")
    r.add_argument("--job", default="tessera_all", help="the job to run (the jobs are listed below)")
    r.add_argument(
        "--full-refresh",
        action="store_true",
        help="read every landing file again and rebuild dbt incremental models from scratch",
    )
    r.add_argument(
        "--verbose",
        action="store_true",
        help="print Dagster's log (INFO) on the console too; by default it goes to <data dir>/logs/dagster-<run id>.log "
        "and the console shows one line per step start and end (TESSERA_LOG_LEVEL sets the console's level)",
    )
    r.set_defaults(func=_cmd_run)

    from tessera.identity.cli import add_parser as add_identity_parser

    add_identity_parser(sub)

    add_realtime_parser(sub)
    return parser


def _command(args: argparse.Namespace) -> str:
    """`tessera identity resolve`: the sub-commands the arguments chose."""
    return " ".join(["tessera", *(str(v) for k, v in vars(args).items() if k.endswith("command") and v)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # --debug is taken anywhere on the line, not only before the command (`tessera run --debug`)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args([a for a in argv if a != "--debug"])
    except user_error_types() as exc:  # raised while parsing: `run --help` reads the jobs
        if debug:
            raise
        print(f"tessera: {one_line(exc)}", file=sys.stderr)
        return 2
    args.debug = debug
    try:
        return args.func(args)
    except user_error_types() as exc:
        if args.debug or getattr(args, "checked", False):
            raise
        print(f"{_command(args)}: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
