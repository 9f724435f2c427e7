"""Bounded memory: every DuckDB connection tessera opens, in Python steps and in dbt, runs under
TESSERA_DUCKDB_MEMORY_LIMIT and spills to TESSERA_DUCKDB_TEMP_DIR (issue 9)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from orchestration.resources import TesseraResource
from tessera.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_python_steps_open_duckdb_with_the_configured_memory_limit_and_spill_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_DATA_DIR", str(tmp_path / "data"))
    for name in ("TESSERA_DUCKDB_PATH", "TESSERA_DUCKDB_TEMP_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TESSERA_DUCKDB_MEMORY_LIMIT", "1GB")
    monkeypatch.setenv("TESSERA_DUCKDB_THREADS", "1")
    spill = tmp_path / "spill"
    monkeypatch.setenv("TESSERA_DUCKDB_TEMP_DIR", str(spill))
    with TesseraResource().duckdb() as con:
        limit, threads, temp = con.execute(
            "select current_setting('memory_limit'), current_setting('threads'), current_setting('temp_directory')"
        ).fetchall()[0]
        # a sort larger than the limit spills there instead of failing
        con.execute("set memory_limit = '64MB'")
        n = con.execute(
            "select count(*) from (select i, md5(i::varchar) as h from range(3000000) t(i) order by h)"
        ).fetchall()[0][0]
    assert limit in ("1.0 GiB", "953.6 MiB") and threads == 1 and Path(temp) == spill
    assert n == 3_000_000
    assert load_settings().dbt_env()["TESSERA_DUCKDB_TEMP_DIR"] == str(spill)


def _dbt(tmp_path, memory_limit: str, *args: str) -> subprocess.CompletedProcess:
    """The dbt CLI with the real profile, on a scratch database that spills to tmp_path/spill,
    one DuckDB thread."""
    env = {
        **os.environ,
        "TESSERA_DUCKDB_PATH": str(tmp_path / "t.duckdb"),
        "TESSERA_DUCKDB_TEMP_DIR": str(tmp_path / "spill"),
        "TESSERA_DUCKDB_MEMORY_LIMIT": memory_limit,
        "TESSERA_DUCKDB_THREADS": "1",
        "DO_NOT_TRACK": "1",
    }
    command = [str(Path(sys.executable).parent / "dbt"), *args, "--profiles-dir", str(ROOT / "dbt_project")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return done


def test_the_dbt_profile_takes_the_same_limits_from_the_same_variables(tmp_path):
    profile = yaml.safe_load((ROOT / "dbt_project" / "profiles.yml").read_text())["tessera"]["outputs"]["duckdb"]
    assert "TESSERA_DUCKDB_MEMORY_LIMIT" in profile["settings"]["memory_limit"]
    assert "TESSERA_DUCKDB_THREADS" in profile["settings"]["threads"]
    assert "TESSERA_DUCKDB_TEMP_DIR" in profile["config_options"]["temp_directory"]
    # one model at a time: it has the whole memory limit
    assert profile["threads"] == 1
    # and dbt's own connection runs with them
    sql = (
        "select current_setting('temp_directory') as t, current_setting('memory_limit') as m, "
        "current_setting('threads') || ' threads' as n"
    )
    done = _dbt(
        tmp_path, "1GB", "show", "--inline", sql, "--output", "json", "--log-format", "json",
        "--project-dir", str(ROOT / "dbt_project"), "--target-path", str(tmp_path / "target"),
    )  # fmt: skip
    assert str(tmp_path / "spill") in done.stdout and ("1.0 GiB" in done.stdout or "953.6 MiB" in done.stdout)
    assert "1 threads" in done.stdout  # DuckDB's default would be every core (2 here)


def test_a_dbt_build_goes_on_after_a_model_spilled(tmp_path):
    """At 1M customers a staging model spilled, and every later model failed: dbt-duckdb SETs its
    `settings` on each new cursor, and DuckDB refuses to switch the temp directory once it holds
    data ("Cannot switch temporary directory after the current one has been used"). The profile
    sets it once, when the database opens. Here: a sort four times the memory limit, then a model
    on it, through the real profile."""
    import duckdb

    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: spill\nprofile: tessera\nconfig-version: 2\nversion: '1.0.0'\n")
    (project / "models" / "sorted.sql").write_text(
        "{{ config(materialized='table') }} select i, md5(i::varchar) as h from range(3000000) t(i) order by h"
    )
    (project / "models" / "after.sql").write_text(
        "{{ config(materialized='table') }} select count(*) as n from {{ ref('sorted') }}"
    )
    _dbt(tmp_path, "64MB", "build", "--project-dir", str(project))
    with duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True) as con:
        assert con.execute("select n from main.after").fetchall() == [(3_000_000,)]
