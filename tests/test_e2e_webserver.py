"""End to end through a real Dagster deployment: `dagster dev` (webserver, daemon, code server)
on 127.0.0.1 with the repository's workspace.yaml, driven only through its GraphQL API.

1. every asset and check of the Definitions is loaded, with the named jobs, schedule and sensors;
2. a materialization launched through the API (job `refresh_customer_view`) is dequeued by the
   daemon, runs in its own process and succeeds; its assets and gates show it;
3. SIGTERM shuts webserver, daemon and code server down, leaving no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import SMALL

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 240
RUN_SECONDS = 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dagster:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def query(self, text: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        assert "errors" not in payload, payload["errors"]
        return payload["data"]


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
ASSETS = """{ assetNodes { assetKey { path } isExecutable
  assetChecksOrError { ... on AssetChecks { checks { name } } } } }"""
REPOSITORY = """query ($selector: RepositorySelector!) { repositoryOrError(repositorySelector: $selector) {
  ... on Repository { jobs { name } schedules { name cronSchedule } sensors { name } } } }"""
LAUNCH = """mutation ($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message } } }"""
RUN = """query ($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"""
LATEST = """query ($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations(limit: 1) { runId } } } }"""
CHECKS = """query ($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { runId status } } } } } } }"""


def _default_signal_handling() -> None:
    """In the child, before exec: SIGINT and SIGTERM back to their defaults, as a service manager
    starts a process. A shell running the suite in the background (`make test &`, nohup) ignores
    SIGINT, children inherit that, and `dagster dev` maps SIGTERM to its SIGINT handler: it then
    ignores SIGTERM and this test would wait for a shutdown that was never asked for."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _wait_until_loaded(api: Dagster, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            entries = api.query(LOCATIONS)["workspaceOrError"]["locationEntries"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(2)
            continue
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [
                e["locationOrLoadError"]
                for e in entries
                if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"
            ]
            assert not errors, errors
            return
        time.sleep(2)
    pytest.fail(f"the workspace did not load within {STARTUP_SECONDS} s:\n{log.read_text()[-4000:]}")


def _expected() -> tuple[set[tuple[str, ...]], set[tuple[tuple[str, ...], str]]]:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    assets = {tuple(k.path) for k in graph.get_all_asset_keys()}
    checks = {(tuple(c.asset_key.path), c.name) for c in graph.asset_check_keys}
    return assets, checks


@pytest.mark.graph
@pytest.mark.system  # `dagster dev` as a process: webserver, daemon, a run launched over GraphQL
def test_dagster_dev_loads_everything_runs_a_job_launched_over_graphql_and_shuts_down(tmp_path):
    from tessera.landing.generate import GenerateConfig, generate
    from tessera.settings import DERIVED_LOCATION_VARS

    data_dir, home = tmp_path / "data", tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n")
    generate(GenerateConfig(**SMALL), data_dir / "landing", data_dir / "truth")
    env = {k: v for k, v in os.environ.items() if k not in DERIVED_LOCATION_VARS}
    # as `.venv/bin/dagster dev` from a shell without the virtualenv activated: dbt is not on PATH
    venv_bin = Path(sys.executable).parent.resolve()
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != venv_bin]
    env.update(
        DAGSTER_HOME=str(home),
        TESSERA_DATA_DIR=str(data_dir),
        PATH=os.pathsep.join(path),
        DO_NOT_TRACK="1",
        GX_ANALYTICS_ENABLED="false",
        TESSERA_GX_DOCS_DIR="",  # no Data Docs (tests/conftest.py, use_data_dir)
        TESSERA_AUTOMATION_DEFAULT_STATUS="stopped",
    )
    port = _free_port()
    log = tmp_path / "dagster_dev.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster"),
                "dev",
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the test can see every child is gone
            preexec_fn=_default_signal_handling,
        )
    api = Dagster(port)
    try:
        _wait_until_loaded(api, proc, log)

        # 1. every asset and check, the jobs, the schedule and the sensors
        nodes = api.query(ASSETS)["assetNodes"]
        loaded_assets = {tuple(n["assetKey"]["path"]) for n in nodes}
        loaded_checks = {
            (tuple(n["assetKey"]["path"]), c["name"]) for n in nodes for c in n["assetChecksOrError"]["checks"]
        }
        expected_assets, expected_checks = _expected()
        assert loaded_assets == expected_assets
        assert loaded_checks == expected_checks
        assert len(loaded_checks) > 100
        selector = {"repositoryLocationName": "tessera", "repositoryName": "__repository__"}
        repository = api.query(REPOSITORY, {"selector": selector})["repositoryOrError"]
        assert {"tessera_all", "refresh_customer_view", "retrain_recommender", "publish"} <= {
            j["name"] for j in repository["jobs"]
        }
        assert {(s["name"], s["cronSchedule"]) for s in repository["schedules"]} == {
            ("daily_full_refresh", "0 3 * * *")
        }
        assert {s["name"] for s in repository["sensors"]} == {
            "landing_files_sensor",
            "freshness_checks_sensor",
            "abandoned_runs_sensor",
        }

        # 2. a materialization launched through the API; the daemon dequeues it
        launched = api.query(
            LAUNCH, {"params": {"selector": {**selector, "jobName": "refresh_customer_view"}, "runConfigData": {}}}
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline, status = time.monotonic() + RUN_SECONDS, None
        while time.monotonic() < deadline:
            status = api.query(RUN, {"id": run_id})["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(3)
        assert status == "SUCCESS", f"run {run_id} ended {status}:\n{log.read_text()[-4000:]}"
        for path in (["raw", "customers"], ["marts", "dim_customers"], ["quarantine", "quarantined_records"]):
            latest = api.query(LATEST, {"key": {"path": path}})["assetOrError"]["assetMaterializations"]
            assert latest and latest[0]["runId"] == run_id, path
        gate = api.query(CHECKS, {"key": {"path": ["raw", "customers"]}})["assetNodeOrError"]
        [execution] = [
            c["executionForLatestMaterialization"]
            for c in gate["assetChecksOrError"]["checks"]
            if c["name"] == "gx_raw_customers"
        ]
        assert execution == {"runId": run_id, "status": "SUCCEEDED"}
        # nothing outside the job's selection ran
        assert (
            api.query(LATEST, {"key": {"path": ["ml", "recommendation_candidates"]}})["assetOrError"][
                "assetMaterializations"
            ]
            == []
        )
    finally:
        # 3. a clean shutdown: SIGTERM, as a service manager sends it
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"dagster dev did not stop within 90 s of SIGTERM:\n{log.read_text()[-4000:]}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("processes of dagster dev outlived it")
    assert code == 0, f"dagster dev exited with {code}:\n{log.read_text()[-4000:]}"
