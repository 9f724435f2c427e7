"""Headless-browser smoke check of the two UIs (`make ui-smoke`).

Starts `dagster dev` (workspace.yaml) and the MLflow UI on free ports of 127.0.0.1, over the data
directory in TESSERA_DATA_DIR (the demo's by default), opens the Dagster asset graph and the
recommender's MLflow experiment page in Debian's Chromium (scripts/install_chromium.sh), saves a
screenshot of each, and checks that each page really rendered: the page's DOM, after its scripts
ran, must name the asset groups and assets of the graph, or the experiment and its runs. Exits
non-zero, naming what was missing, otherwise.

    .venv/bin/python scripts/ui_smoke.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tessera.settings import load_settings  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless",  # Playwright adds its own headless flag
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1600,1000",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, ok, what: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if ok(url):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        time.sleep(2)
    raise SystemExit(f"{what} did not come up within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def dagster_loaded(url: str) -> bool:
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    )
    request = urllib.request.Request(
        url, data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        entries = json.loads(response.read())["data"]["workspaceOrError"]["locationEntries"]
    if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
        return False
    errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
    if errors:
        raise SystemExit(f"code location failed to load: {errors}")
    return True


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status == 200


@contextmanager
def service(args: list[str], env: dict, log: Path):
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def render(browser, url: str, screenshot: Path, expected: list[str], timeout: float = 90) -> list[str]:
    """Open the page, dismiss Dagster's first-visit dialog, wait until every expected text is on
    the page (or the timeout), save a screenshot; the texts that never appeared."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(url, wait_until="load", timeout=int(timeout * 1000))
        deadline = time.monotonic() + timeout
        missing = list(expected)
        while time.monotonic() < deadline:
            for dialog_button in ("Skip", "Got it"):  # Dagster's and MLflow's first-visit dialogs
                button = page.get_by_role("button", name=dialog_button)
                if button.count():
                    button.first.click()
            text = page.inner_text("body")
            missing = [t for t in expected if t not in text]
            if not missing:
                break
            time.sleep(1)
        page.wait_for_timeout(2000)  # let the graph finish its layout animation
        page.screenshot(path=str(screenshot))
        return missing
    finally:
        page.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="where the screenshots go (default: $TESSERA_DATA_DIR/ui_smoke)")
    args = parser.parse_args()
    settings = load_settings()
    out = (args.out or settings.data_dir / "ui_smoke").resolve()
    out.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "TESSERA_DATA_DIR": str(settings.data_dir),
    }
    env.setdefault("DAGSTER_HOME", str(ROOT / ".dagster_home"))
    dagster_port, mlflow_port = free_port(), free_port()

    from mlflow import MlflowClient

    experiment = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_experiment_by_name(
        settings.mlflow_experiment
    )
    if experiment is None:
        raise SystemExit(
            f"no MLflow experiment {settings.mlflow_experiment!r} in {settings.mlflow_tracking_uri}: run `make demo` first"
        )
    runs = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).search_runs(
        [experiment.experiment_id], max_results=50, order_by=["attributes.start_time DESC"]
    )
    # the newest top-level run (baselines are nested under it, collapsed in the table)
    run_names = [r.info.run_name for r in runs if "mlflow.parentRunId" not in r.data.tags][:1]
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    groups = sorted({graph.get(k).group_name for k in graph.get_all_asset_keys()})

    from playwright.sync_api import sync_playwright

    binary = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(binary).exists():
        raise SystemExit("Chromium is not installed: run scripts/install_chromium.sh (make ui-smoke does)")
    checks: list[tuple[str, Path, list[str]]] = []
    with (
        service(
            [str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(dagster_port)],
            env,
            out / "dagster_dev.log",
        ) as dagster,
        service(
            [
                str(bin_dir / "mlflow"),
                "ui",
                "--backend-store-uri",
                settings.mlflow_tracking_uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
            ],
            env,
            out / "mlflow_ui.log",
        ) as mlflow,
    ):
        started = time.monotonic()
        wait_for(
            f"http://127.0.0.1:{dagster_port}/graphql",
            dagster_loaded,
            "dagster dev",
            240,
            dagster,
            out / "dagster_dev.log",
        )
        wait_for(f"http://127.0.0.1:{mlflow_port}/health", http_ok, "mlflow ui", 120, mlflow, out / "mlflow_ui.log")
        print(f"both UIs up in {time.monotonic() - started:.0f} s")
        pages = [
            # the global asset lineage: every group, with its assets
            (f"http://127.0.0.1:{dagster_port}/asset-groups", out / "dagster_asset_graph.png", groups),
            (
                # the experiment's training runs, newest first
                f"http://127.0.0.1:{mlflow_port}/#/experiments/{experiment.experiment_id}/runs",
                out / "mlflow_experiment.png",
                [settings.mlflow_experiment, *run_names],
            ),
        ]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_FLAGS[1:])
            try:
                for url, png, expected in pages:
                    missing = render(browser, url, png, expected)
                    size = png.stat().st_size if png.exists() else 0
                    print(f"{url} -> {png} ({size:,} bytes); expected text missing: {missing or 'none'}")
                    if size < 20_000:
                        missing.append(f"a screenshot over 20 kB (got {size} bytes: a blank page?)")
                    checks.append((url, png, missing))
            finally:
                browser.close()
    failed = [(url, missing) for url, _, missing in checks if missing]
    if failed:
        for url, missing in failed:
            print(f"FAILED {url}: {missing}", file=sys.stderr)
        return 1
    print(f"ui-smoke passed; screenshots in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
