"""Overlapping runs on one DuckDB file never fail on its lock.

DuckDB lets one process hold the file while it writes; every tessera step that opens it (loads,
gates, dbt, ML, publishing, checks) is in the `duckdb` concurrency pool, which the instance limits
to one step at a time across runs. bench/concurrency.py runs the same experiment at any size, and
with --control shows what happens without the pool (every run failed on the lock).

The pool is not airtight on the SQLite storage of a local instance: its slot claim is a read then
a write without a row lock, so two runs starting together can both get the slot (CI met this once
in a batch of four). The step that loses then waits on DuckDB's own lock instead of failing, which
is why a wait is allowed here and a lock *error* is not.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tessera.db import DuckDBLockTimeout, connect
from tests.conftest import duckdb_held

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("concurrency_bench", ROOT / "bench" / "concurrency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.graph
@pytest.mark.system  # four `tessera run` processes at once
def test_four_overlapping_runs_never_fail_on_the_duckdb_lock(tmp_path):
    selection = ["raw/products", "raw/orders", "raw/order_items"]  # each load with its blocking gate
    result = _bench().overlapping_runs(4, "inprocess", selection, 300, tmp_path)
    assert result["succeeded"] == 4, result["failed_output_tails"]
    assert result["lock_errors"] == 0  # no step failed on the lock (waits, if any, are logged)
    assert result["raw_rows_equal_landing_rows"] == {"products": True, "orders": True, "order_items": True}


def test_a_process_outside_dagster_holding_the_file_is_waited_for_then_named(tmp_path):
    path = tmp_path / "held.duckdb"
    with duckdb_held(path, 3):
        with pytest.raises(DuckDBLockTimeout, match="stayed locked by another process"):
            connect(path, read_only=True, wait_seconds=0.5)
        waits: list[str] = []
        con = connect(path, read_only=True, wait_seconds=30, log=waits.append)
        con.close()
        assert waits and all("locked by another process" in w for w in waits)
