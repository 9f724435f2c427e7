"""The dbt project's unit tests (the `unit_tests:` of dbt_project/models/*/_*.yml): the SQL's logic on
fixed inputs. Materializations leave them out (orchestration/dbt.py, `dbt_build_args`); they run
here, once, against a copy of the session's warehouse, whose relations give dbt the input columns
it needs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DBT = Path(sys.executable).with_name("dbt")


def test_materializations_leave_dbt_unit_tests_out():
    from orchestration.dbt import dbt_build_args

    args = dbt_build_args()
    assert args[args.index("--exclude-resource-type") + 1] == "unit_test"


@pytest.mark.graph
def test_every_dbt_unit_test_passes(warehouse_copy, tmp_path):
    env = {
        **os.environ,
        "TESSERA_DUCKDB_PATH": str(warehouse_copy.duckdb_path),
        "TESSERA_DUCKDB_TEMP_DIR": str(tmp_path / "duckdb_tmp"),
        "DO_NOT_TRACK": "1",
    }
    done = subprocess.run(
        [str(DBT), "--no-write-json", "test", "--select", "test_type:unit", "--target-path", str(tmp_path / "target"),
         "--log-path", str(tmp_path / "logs"), "--project-dir", str(REPO / "dbt_project"),
         "--profiles-dir", str(REPO / "dbt_project")],
        env=env, capture_output=True, text=True, check=False, cwd=REPO / "dbt_project",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:]
    # every unit test of the project ran and passed (a selection that matched nothing exits 0 too)
    manifest = json.loads((REPO / "dbt_project" / "target" / "manifest.json").read_text())
    declared = len(manifest["unit_tests"])
    summary = re.search(r"PASS=(\d+) WARN=(\d+) ERROR=(\d+) SKIP=(\d+)", done.stdout)
    assert summary is not None, done.stdout[-2000:]
    assert declared >= 20
    assert [int(n) for n in summary.groups()] == [declared, 0, 0, 0]
