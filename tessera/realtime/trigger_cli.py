"""`tessera realtime triggers` (the trigger worker) and `tessera realtime audience` (its export from
the warehouse): docs/realtime_triggers.md."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

log = logging.getLogger("tessera.realtime.triggers")


def cmd_triggers(args: argparse.Namespace) -> int:
    import redis

    from tessera.decisioning.catalogue import CatalogueError, load_catalogue
    from tessera.realtime.audience import default_dir
    from tessera.realtime.triggers import TriggerSettings, TriggerWorker, load_trigger_settings
    from tessera.settings import ConfigurationError, load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        trigger_settings = load_trigger_settings()
        overrides = {k: v for k, v in (("idle_minutes", args.idle_minutes), ("redis_url", args.redis_url)) if v}
        if args.idle_minutes is not None and args.idle_minutes <= 0:
            raise ConfigurationError(f"--idle-minutes must be a number above 0, got {args.idle_minutes}")
        if overrides:
            trigger_settings = TriggerSettings(**{**trigger_settings.model_dump(), **overrides})
        catalogue = load_catalogue()
    except (ConfigurationError, CatalogueError) as exc:
        print(f"tessera realtime triggers: {exc}", file=sys.stderr)
        return 2
    if not catalogue.realtime_actions:
        print(f"{catalogue.path} has no realtime action: nothing to trigger", file=sys.stderr)
        return 2
    client = redis.Redis.from_url(trigger_settings.redis_url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        print(
            f"tessera realtime triggers: Redis at {trigger_settings.redis_url} does not answer: {exc}", file=sys.stderr
        )
        return 2
    audience_dir = trigger_settings.audience_dir or default_dir(settings.data_dir)
    worker = TriggerWorker(
        client,
        catalogue,
        trigger_settings,
        audience_dir,
        settings.publish_dir,
        holdout_share=settings.holdout_share,
        seed=settings.seed,
        retention_days=settings.publish_retention_days,
        salt=settings.pseudonym_salt,
    )
    for action in catalogue.realtime_actions:
        threshold = (
            f"{worker.idle_seconds(action) / 60:g} minutes"
            if action.trigger["signal"] == "idle_minutes"
            else f"{action.trigger['threshold']}"
        )
        log.info("%s: %s %s, %s", action.id, action.trigger["signal"], threshold, action.channel)
    if args.once:
        print(worker.tick())
        return 0
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    deadline = time.monotonic() + args.seconds if args.seconds else None
    last_report = time.monotonic()

    def stop() -> bool:
        nonlocal last_report
        if time.monotonic() - last_report >= args.report_seconds:
            log.info("counts: %s", worker.stats.as_dict())  # counts only: no visitor or customer id
            last_report = time.monotonic()
        return bool(stopping) or (deadline is not None and time.monotonic() >= deadline)

    log.info("reading %s as group triggers; outbox under %s", trigger_settings.stream_key, settings.publish_dir)
    worker.run(stop)
    log.info("stopped; counts: %s", worker.stats.as_dict())
    return 0


def cmd_audience(args: argparse.Namespace) -> int:
    from tessera.db import connect
    from tessera.errors import UserError
    from tessera.realtime.audience import default_dir, export
    from tessera.settings import load_settings

    settings = load_settings()
    out_dir = args.out or default_dir(settings.data_dir)
    if not settings.duckdb_path.is_file():
        raise UserError(f"no warehouse at {settings.duckdb_path} (TESSERA_DUCKDB_PATH): run `tessera run` first")
    con = connect(settings.duckdb_path, read_only=True, config=settings.duckdb_config(),
                  wait_seconds=settings.duckdb_lock_wait_seconds)  # fmt: skip
    try:
        manifest = export(con, out_dir, settings.pseudonym_salt)
    finally:
        con.close()
    rows = ", ".join(f"{n:,} {name}" for name, n in manifest["rows"].items())
    print(f"trigger audience {manifest['version']} (as of {manifest['as_of_date']}) in {out_dir}: {rows}")
    return 0


def add_commands(realtime_sub) -> None:
    """The trigger commands, under `tessera realtime` (tessera/cli.py)."""
    t = realtime_sub.add_parser(
        "triggers", help="the trigger worker: the catalogue's realtime actions, decided per event, into the outbox"
    )
    t.add_argument(
        "--idle-minutes",
        type=float,
        help="replace every idle_minutes trigger, e.g. 0.1 for a demo (TESSERA_TRIGGERS_IDLE_MINUTES)",
    )
    t.add_argument("--redis-url", help="the Redis to read (default: TESSERA_REDIS_URL or redis://127.0.0.1:6379/0)")
    t.add_argument("--once", action="store_true", help="one round (events, idle carts, outbox), print the counts")
    t.add_argument("--seconds", type=float, help="stop after this many seconds (default: until SIGINT/SIGTERM)")
    t.add_argument("--report-seconds", type=float, default=60, help="log the counts this often")
    t.set_defaults(func=cmd_triggers)
    a = realtime_sub.add_parser(
        "audience", help="export what the trigger worker knows of each customer from the warehouse (after a run)"
    )
    a.add_argument("--out", type=Path, help="folder to write (default: $TESSERA_DATA_DIR/realtime/trigger_audience)")
    a.set_defaults(func=cmd_audience)
