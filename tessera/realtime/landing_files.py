"""Streamed events as landing files: rows of the landing contract's `events` source, written so
that the loader and the landing sensor only ever see whole files.

A file is written under `<landing_dir>/.realtime-staging/` (outside every source folder: the
loader lists each entry of `events/` and would refuse a temporary name there, blocking the load),
fsynced, then renamed into `<landing_dir>/events/` (the same file system, so the rename is atomic)
and the folder fsynced. Its name starts with LANDING_FILE_PREFIX: the landing sensor does not wait
for such a file to settle (orchestration/automation.py), since it only appears once complete;
every other delivered file still settles for TESSERA_LANDING_SETTLE_SECONDS.

Rows (tessera/landing/contract.py, `events`): one per landing-mappable event (`event_type` set by
tessera.realtime.events: page views, product views, searches, cart adds and removes, checkouts,
purchases), `event_id` the messageId; an order with products is one row per product,
`<messageId>:<n>` with n = 1, 2, ... in the order of properties.products. An event without an
anonymousId (server-side, userId only) has no row: the contract requires the cookie id (staging
would quarantine the row as "missing anonymous_id"); it still updates the session state, and the
worker counts it (`not_landed_without_anonymous_id`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson

from tessera.landing.contract import SOURCES_BY_NAME

SOURCE = "events"
COLUMNS = tuple(SOURCES_BY_NAME[SOURCE].column_names)
LANDING_FILE_PREFIX = "stream-"
STAGING_DIR = ".realtime-staging"
PART_SUFFIX = ".part"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def landing_rows(event: dict, session_id: str | None) -> list[dict]:
    """The `events` rows of one normalised event (none when it does not land)."""
    event_type = event.get("event_type")
    if event_type is None or not event.get("anonymous_id"):
        return []
    base = {
        "event_id": event["message_id"],
        "event_type": event_type,
        "event_ts": event["ts"],
        "anonymous_id": event["anonymous_id"],
        "customer_id": event.get("user_id"),
        "session_id": session_id,
        "product_id": None,
        "device": event.get("device"),
        "referrer": event.get("referrer"),
        "country": event.get("country"),
    }
    products = event.get("products") or []
    if event_type == "purchase" and products:
        return [
            {**base, "event_id": f"{event['message_id']}:{n}", "product_id": p["product_id"]}
            for n, p in enumerate(products, 1)
        ]
    if products:
        return [{**base, "product_id": products[0]["product_id"]}]
    return [base]


def file_name(first_entry_id: str, consumer: str, written_at: str) -> str:
    """`stream-<UTC time>-<first stream id>-<consumer>.jsonl`: unique (a stream id is delivered to
    one consumer at a time) and in time order, the order the loader reads files in."""
    return f"{LANDING_FILE_PREFIX}{written_at}-{first_entry_id}-{_UNSAFE.sub('_', consumer)}.jsonl"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage(landing_dir: Path, name: str, rows: list[dict]) -> Path:
    """Write the rows as JSON Lines under the staging folder and fsync; returns the staged path."""
    staging = Path(landing_dir) / STAGING_DIR
    staging.mkdir(parents=True, exist_ok=True)
    part = staging / f"{name}{PART_SUFFIX}"
    body = b"".join(orjson.dumps({c: row.get(c) for c in COLUMNS}) + b"\n" for row in rows)
    with open(part, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    return part


def publish(landing_dir: Path, part: Path) -> Path:
    """Rename a staged file into `events/` (atomic) and fsync the folder: durable once returned."""
    target_dir = Path(landing_dir) / SOURCE
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / part.name.removesuffix(PART_SUFFIX)
    os.replace(part, target)
    _fsync_dir(target_dir)
    return target


def remove_leftovers(landing_dir: Path, consumer: str) -> int:
    """Delete staged files a killed worker of this name left (their events are still pending on
    the stream, so they are written again); returns how many."""
    staging = Path(landing_dir) / STAGING_DIR
    mine = f"-{_UNSAFE.sub('_', consumer)}.jsonl{PART_SUFFIX}"
    removed = 0
    for path in staging.glob(f"{LANDING_FILE_PREFIX}*{PART_SUFFIX}") if staging.is_dir() else []:
        if path.name.endswith(mine):
            path.unlink()
            removed += 1
    return removed
