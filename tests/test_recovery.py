"""Killed runs are recovered whoever launched them (orchestration/recovery.py, the abandoned_runs_sensor
in orchestration/automation.py). tests/test_crash.py kills a real `tessera run`; here the run
records a crash leaves behind are written directly, as a daemon-launched run would leave them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import dagster as dg

from orchestration.automation import abandoned_runs_sensor
from orchestration.recovery import (
    HOST_TAG,
    PID_TAG,
    PROCESS_START_TAG,
    TAGGED_RUN_TAG,
    process_alive,
    process_start,
    recover_abandoned_runs,
)
from orchestration.resources import DUCKDB_POOL

DAGSTER_YAML = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"


def _instance(tmp_path) -> dg.DagsterInstance:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    return dg.DagsterInstance.from_config(str(home))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _run(instance, status, tags: dict[str, str], run_id: str | None = None) -> str:
    run_id = run_id or str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="tessera_all", run_id=run_id, status=status, tags=tags))
    return run_id


def _process_tags(pid: int, run_id: str, host: str | None = None) -> dict[str, str]:
    return {PID_TAG: str(pid), HOST_TAG: host or socket.gethostname(), TAGGED_RUN_TAG: run_id}


def _slots(instance) -> int:
    return instance.event_log_storage.get_concurrency_info(DUCKDB_POOL).active_slot_count


def test_the_sensor_fails_a_started_run_whose_process_is_gone_and_frees_its_pool_slot(tmp_path):
    # issue 33: only `tessera run` recovered a killed run's slot; a run launched by the schedule
    # or the daemon after a crash waited for it forever
    instance = _instance(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_id = str(uuid.uuid4())
        _run(instance, dg.DagsterRunStatus.STARTED, _process_tags(_dead_pid(), dead_id), dead_id)
        instance.event_log_storage.set_concurrency_slots(DUCKDB_POOL, 1)
        claim = instance.event_log_storage.claim_concurrency_slot(DUCKDB_POOL, dead_id, "raw__customers")
        assert claim.is_claimed and _slots(instance) == 1
        # a later run's step waits for the slot the dead run holds
        waiting_id = str(uuid.uuid4())
        _run(instance, dg.DagsterRunStatus.STARTED, _process_tags(sleeper.pid, waiting_id), waiting_id)
        assert not instance.event_log_storage.claim_concurrency_slot(DUCKDB_POOL, waiting_id, "raw__orders").is_claimed
        # left alone: a live process, another host, tags copied from another run (a re-execution
        # not yet re-tagged), and a run without tags
        other_host = _run(instance, dg.DagsterRunStatus.STARTED, _process_tags(_dead_pid(), "x", host="elsewhere"))
        copied = _run(instance, dg.DagsterRunStatus.STARTED, _process_tags(_dead_pid(), dead_id))
        untagged = _run(instance, dg.DagsterRunStatus.STARTED, {})

        context = dg.build_sensor_context(instance=instance)
        result = abandoned_runs_sensor(context)

        assert isinstance(result, dg.SkipReason)
        assert f"1 abandoned run(s) marked failed, their pool slots freed: ['{dead_id}']" == result.skip_message
        assert instance.get_run_by_id(dead_id).status == dg.DagsterRunStatus.FAILURE
        for run_id in (waiting_id, other_host, copied, untagged):
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED, run_id
        # the slot is free: the waiting run's step gets it
        assert _slots(instance) == 0
        assert instance.event_log_storage.claim_concurrency_slot(DUCKDB_POOL, waiting_id, "raw__orders").is_claimed
        # the next tick has nothing to do
        assert abandoned_runs_sensor(dg.build_sensor_context(instance=instance)).skip_message == "no abandoned run"
    finally:
        sleeper.kill()
        sleeper.wait()
        instance.dispose()


def test_a_finished_run_still_holding_a_slot_has_it_freed(tmp_path):
    # e.g. a run marked failed or canceled while its worker could not let go
    instance = _instance(tmp_path)
    try:
        run_id = _run(instance, dg.DagsterRunStatus.CANCELED, {})
        instance.event_log_storage.set_concurrency_slots(DUCKDB_POOL, 1)
        assert instance.event_log_storage.claim_concurrency_slot(DUCKDB_POOL, run_id, "raw__customers").is_claimed
        lines = []
        assert recover_abandoned_runs(instance, log=lines.append) == []
        assert _slots(instance) == 0
        assert lines == [f"run {run_id} (CANCELED) still held or awaited concurrency-pool slots; freed"]
    finally:
        instance.dispose()


def test_a_pid_given_to_another_process_is_not_taken_for_the_run():
    me = os.getpid()
    assert process_alive(me, process_start(me))
    assert process_alive(me)  # without a recorded start, any process with the pid counts
    assert not process_alive(me, "another-boot:123")
    assert not process_alive(_dead_pid())


def test_a_run_whose_pid_was_reused_after_a_restart_is_recovered(tmp_path):
    instance = _instance(tmp_path)
    try:
        run_id = str(uuid.uuid4())
        # the tagged pid is alive (this test's own parent), but it is not the process that ran it
        tags = {**_process_tags(os.getppid(), run_id), PROCESS_START_TAG: "another-boot:1"}
        _run(instance, dg.DagsterRunStatus.STARTED, tags, run_id)
        assert recover_abandoned_runs(instance, log=lambda _: None) == [run_id]
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    finally:
        instance.dispose()
