"""Recover from runs that died without saying so (SIGKILL, out-of-memory kill, power loss).

A run killed mid-step leaves its Dagster run marked in progress and, worse, keeps the slot it
held in the `duckdb` concurrency pool: with the pool limited to one, every later run would wait
for that slot forever. `tessera run` tags each run with its host and process id; before the next
run starts, runs from this host still marked in progress whose process no longer exists are
marked failed and their pool slots freed. The warehouse itself needs no repair: DuckDB replays or
discards its write-ahead log on the next open, loads and publishes replace tables inside one
transaction, and Parquet exports are swapped in by rename, so a killed step leaves the previous
version in place.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import dagster as dg

PID_TAG = "tessera/pid"
HOST_TAG = "tessera/host"
IN_PROGRESS = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def run_tags() -> dict[str, str]:
    """Tags that let a later run tell whether this one's process is still alive."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def recover_abandoned_runs(instance: dg.DagsterInstance, log: Callable[[str], None] = print) -> list[str]:
    """Mark failed, and free the pool slots of, this host's in-progress runs whose process is gone.
    Returns their run ids. Runs of other hosts and runs without the tags are left alone (the
    Dagster daemon's run monitoring owns runs it launched)."""
    recovered = []
    records = instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS, tags={HOST_TAG: socket.gethostname()}))
    for record in records:
        run = record.dagster_run
        pid = int(run.tags.get(PID_TAG, "0") or 0)
        if not pid or pid == os.getpid() or process_alive(pid):
            continue
        instance.report_run_failed(run, message=f"process {pid} is gone (killed or crashed); marked failed by tessera")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log(f"run {run.run_id}: process {pid} is gone; marked failed and its concurrency-pool slots freed")
        recovered.append(run.run_id)
    return recovered
