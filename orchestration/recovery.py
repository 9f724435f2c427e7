"""Recover from runs that died without saying so (SIGKILL, out-of-memory kill, power loss).

A run killed mid-step leaves its Dagster run marked in progress and, worse, keeps the slot it
held in the `duckdb` concurrency pool: with the pool limited to one, every later run would wait
for that slot forever. Every run is therefore tagged with the host, process id and process start
of the process running its steps: `tessera run` at launch, and the TesseraResource when the run
worker sets it up (a run launched from the UI, a schedule or a sensor). Runs from this host still
marked in progress whose process no longer exists are marked failed and their pool slots freed:
by `tessera run` before it starts, and by the `abandoned_runs_sensor` (orchestration/automation.py)
every sensor interval, whoever launched them. The warehouse itself needs no repair: DuckDB replays or
discards its write-ahead log on the next open, loads and publishes replace tables inside one
transaction, and Parquet exports are swapped in by rename, so a killed step leaves the previous
version in place. docs/operations.md, "Killed runs".
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import dagster as dg

PID_TAG = "tessera/pid"
HOST_TAG = "tessera/host"
# "<boot id>:<start time in clock ticks>" of the process: a pid reused after a restart is not it
PROCESS_START_TAG = "tessera/process_start"
# the run the process tags were written for: a re-execution copies its parent's tags, which name
# a process that is gone although the new run is alive, until its own process re-tags it
TAGGED_RUN_TAG = "tessera/tagged_run"
IN_PROGRESS = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def process_start(pid: int) -> str | None:
    """Identifies one process over the machine's lifetime (Linux /proc); None where unknown."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count fields after its last ")"
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"


def run_tags(run_id: str | None = None) -> dict[str, str]:
    """Tags that let a later run tell whether this one's process is still alive."""
    pid = os.getpid()
    tags = {PID_TAG: str(pid), HOST_TAG: socket.gethostname()}
    start = process_start(pid)
    if start is not None:
        tags[PROCESS_START_TAG] = start
    if run_id is not None:
        tags[TAGGED_RUN_TAG] = run_id
    return tags


def tag_run_with_this_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Tag `run` with the current process, unless it already names it (`tessera run` tags at
    launch). Called where the run's steps execute (the TesseraResource's setup)."""
    tags = run_tags(run.run_id)
    if any(run.tags.get(key) != value for key, value in tags.items()):
        instance.add_run_tags(run.run_id, tags)


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether process `pid` exists and, when `start` is known, is the same process (not a
    later one given the same pid, e.g. after a reboot)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    if start is None:
        return True
    now = process_start(pid)
    return now is None or now == start


def _dead_process(run: dg.DagsterRun) -> int | None:
    """The pid of the run's tagged process on this host if that process is gone, else None
    (alive, another host, no tags, or tags copied from another run)."""
    tagged_run = run.tags.get(TAGGED_RUN_TAG)
    if tagged_run is not None and tagged_run != run.run_id:
        return None
    if run.tags.get(HOST_TAG) != socket.gethostname():
        return None
    pid = int(run.tags.get(PID_TAG, "0") or 0)
    if not pid or pid == os.getpid() or process_alive(pid, run.tags.get(PROCESS_START_TAG)):
        return None
    return pid


def recover_abandoned_runs(instance: dg.DagsterInstance, log: Callable[[str], None] = print) -> list[str]:
    """Mark failed, and free the pool slots of, this host's in-progress runs whose process is gone,
    and free the slots still held by finished runs. Returns the run ids marked failed. Runs of
    other hosts and runs without the tags are left alone (Dagster's run monitoring,
    docs/operations.md)."""
    recovered = []
    records = instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS, tags={HOST_TAG: socket.gethostname()}))
    for record in records:
        run = record.dagster_run
        pid = _dead_process(run)
        if pid is None:
            continue
        instance.report_run_failed(run, message=f"process {pid} is gone (killed or crashed); marked failed by tessera")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log(f"run {run.run_id}: process {pid} is gone; marked failed and its concurrency-pool slots freed")
        recovered.append(run.run_id)
    free_slots_of_finished_runs(instance, log)
    return recovered


def free_slots_of_finished_runs(instance: dg.DagsterInstance, log: Callable[[str], None] = print) -> list[str]:
    """Free the pool slots (held or waited for) of runs that are over: a run marked failed or
    canceled while its worker could not let go (Dagster frees these only with run monitoring's
    free_slots_after_run_end_seconds). Returns their run ids."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    holders = storage.get_concurrency_run_ids()
    if not holders:
        return []
    freed = []
    for record in instance.get_run_records(dg.RunsFilter(run_ids=sorted(holders), statuses=FINISHED)):
        run = record.dagster_run
        storage.free_concurrency_slots_for_run(run.run_id)
        log(f"run {run.run_id} ({run.status.value}) still held or awaited concurrency-pool slots; freed")
        freed.append(run.run_id)
    return freed


def run_in_progress(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a run (e.g. the owner of a publish staging directory) may still be writing."""
    record = instance.get_run_record_by_id(run_id)
    return record is not None and not record.dagster_run.is_finished
