"""Headless-browser smoke check of every page a user of tessera opens (`make ui-smoke`).

Over the data directory in TESSERA_DATA_DIR (the demo's by default) it starts, on free ports of
127.0.0.1, `dagster dev` (workspace.yaml), the MLflow UI and `tessera serve`, then opens each page
of PAGES in Debian's Chromium (scripts/install_chromium.sh) and saves a screenshot of it:

- Dagster: the global asset lineage, the newest run's job with its runs, that run, and an asset
  page with its columns;
- MLflow: the recommender experiment, and its newest training run;
- Great Expectations Data Docs: the index, and the newest validation page (from file://);
- the serving API's /docs;
- the marketer's campaign report, the message previews' index and one preview (from file://).

A page fails when
- it asks for anything from a host other than 127.0.0.1 / localhost (every such request is
  aborted, so nothing leaves the machine), or a local file it loads is missing;
- it stays blank: a text it must contain never appears (after its scripts ran), its text is
  shorter than MIN_TEXT_CHARS, or its screenshot is nearly one colour;
- its check in the page (`script`) is false, e.g. the Data Docs' icon font did not load.
A page whose file does not exist yet (a report no run has written) is SKIPPED, saying so.
Exits 1 naming every failed page and what it missed.

    .venv/bin/python scripts/ui_smoke.py [--out DIR] [--only NAME,...]

Screenshots go to docs/screenshots/ui/ (the committed ones are from the demo); the services' logs
to $TESSERA_DATA_DIR/ui_smoke/. To add a page: a Page in the function of its service below (a file
of the data directory: FILE_PAGES).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tessera.settings import Settings, load_settings  # noqa: E402

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
VIEWPORT = {"width": 1440, "height": 900}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
MIN_TEXT_CHARS = 100
MIN_COLOURS = 16  # a blank page, or one line on white, has a handful
PAGE_TIMEOUT_S = 90


@dataclass
class Page:
    """One page to open. `url` None: skipped, `skipped` says why. `expect`: texts the rendered page
    must contain; `script`: a JavaScript expression that must be true once they are there."""

    name: str  # the screenshot's file name, <name>.png; its prefix (before _) names the service
    url: str | None
    expect: list[str] = field(default_factory=list)
    script: str | None = None
    skipped: str = ""


# Pages that are files of the data directory, opened from file://: (name, glob under
# TESSERA_DATA_DIR (the newest match is opened), texts it must contain). Built by other steps, so
# each may not exist yet: then it is skipped, saying so.
FILE_PAGES = [
    ("marketer_campaign_report", "reports/campaigns/latest.html", ["Audience"]),
    ("marketer_previews_index", "decisioning/previews/*/index.html", ["variant"]),
]

# Font Awesome's fonts were loaded: Data Docs draw their pass/fail icons with them
FONT_AWESOME_LOADED = "[...document.fonts].some(f => f.family.includes('Font Awesome') && f.status === 'loaded')"


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


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def dagster_loaded(url: str) -> bool:
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    )
    entries = graphql(url, query)["workspaceOrError"]["locationEntries"]
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


def newest(paths) -> Path | None:
    paths = [p for p in paths if p.is_file()]
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


# --------------------------------------------------------------------------- the pages of each UI


def dagster_pages(base: str) -> list[Page]:
    """The lineage, the newest run's job page listing its runs, that run, and dim_customers with
    its columns."""
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    groups = sorted({graph.get(k).group_name for k in keys})
    pages = [Page("dagster_asset_graph", f"{base}/asset-groups", groups)]

    runs = graphql(
        f"{base}/graphql",
        "{ runsOrError(limit: 1) { ... on Runs { results { runId jobName "
        "repositoryOrigin { repositoryLocationName repositoryName } } } } }",
    )["runsOrError"]["results"]
    if runs:
        run = runs[0]
        origin = run["repositoryOrigin"] or {}
        name = origin.get("repositoryName") or "__repository__"
        location = origin.get("repositoryLocationName") or "tessera"
        # the UI's own address of a code location: the location alone for its single unnamed
        # repository, else name@location (an escaped '@' is taken as part of the name)
        address = location if name == "__repository__" else f"{name}@{location}"
        job_url = f"{base}/locations/{urllib.parse.quote(address, safe='@')}/jobs/{run['jobName']}/runs"
        # the job's page lists its runs: the newest one's short id
        pages.append(Page("dagster_job_runs", job_url, [run["jobName"], run["runId"][:8]]))
        pages.append(Page("dagster_run", f"{base}/runs/{run['runId']}", [run["jobName"], run["runId"][:8]]))
        # the Overview timeline shows each job with runs in the last day
        pages.append(Page("dagster_overview_timeline", f"{base}/overview/activity/timeline", [run["jobName"]]))
    else:
        why = "no Dagster run in this DAGSTER_HOME: run `tessera run` (make demo) first"
        pages += [Page(n, None, skipped=why) for n in ("dagster_job_runs", "dagster_run", "dagster_overview_timeline")]

    with_columns = [k for k in keys if "dagster/column_schema" in (graph.get(k).metadata or {})]
    asset = next((k for k in with_columns if k.path[-1] == "dim_customers"), with_columns[0] if with_columns else None)
    if asset is None:
        pages.append(Page("dagster_asset_columns", None, skipped="no asset declares a column schema"))
    else:
        columns = [c.name for c in graph.get(asset).metadata["dagster/column_schema"].columns]
        path = "/".join(urllib.parse.quote(p) for p in asset.path)
        pages.append(Page("dagster_asset_columns", f"{base}/assets/{path}", [asset.path[-1], *columns[:3]]))
    return pages


def mlflow_pages(base: str, settings: Settings) -> list[Page]:
    """The recommender experiment's runs, and its newest top-level run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        why = f"no MLflow experiment {settings.mlflow_experiment!r} in {settings.mlflow_tracking_uri}: run `make demo` first"
        return [Page("mlflow_experiment", None, skipped=why), Page("mlflow_run", None, skipped=why)]
    runs = client.search_runs([experiment.experiment_id], max_results=50, order_by=["attributes.start_time DESC"])
    # the newest top-level run (baselines are nested under it, collapsed in the table)
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][:1]
    experiment_url = f"{base}/#/experiments/{experiment.experiment_id}"
    pages = [
        Page(
            "mlflow_experiment", f"{experiment_url}/runs", [settings.mlflow_experiment, *(r.info.run_name for r in top)]
        )
    ]
    if top:
        run = top[0]
        metric = sorted(run.data.metrics)[:1]
        pages.append(Page("mlflow_run", f"{experiment_url}/runs/{run.info.run_id}", [run.info.run_name, *metric]))
    else:
        pages.append(Page("mlflow_run", None, skipped="the experiment has no run"))
    return pages


def data_docs_pages(settings: Settings) -> list[Page]:
    """The Data Docs index (its tables are drawn by bootstrap-table, so a suite's name shows only
    when the scripts ran), and the newest validation page with its icons."""
    docs = settings.gx_docs_dir
    if docs is None:
        why = "Data Docs are off (TESSERA_GX_DOCS_DIR is empty)"
        return [Page("data_docs_index", None, skipped=why), Page("data_docs_validation", None, skipped=why)]
    index, page = docs / "index.html", newest((docs / "validations").rglob("*.html"))
    if not index.is_file() or page is None:
        why = f"no Data Docs in {docs}: run `tessera run` (make demo) first"
        return [Page("data_docs_index", None, skipped=why), Page("data_docs_validation", None, skipped=why)]
    suite = page.relative_to(docs / "validations").parts[0]
    return [
        Page("data_docs_index", index.as_uri(), ["Validation Results", suite, "Showing 1 to"]),
        Page(
            "data_docs_validation",
            page.as_uri(),
            ["Expectation Validation Result", suite, "Data asset:"],
            script=FONT_AWESOME_LOADED,
        ),
    ]


def api_pages(base: str) -> list[Page]:
    return [Page("api_docs", f"{base}/docs", ["tessera serving API", "/health"])]


def file_pages(settings: Settings) -> list[Page]:
    pages = []
    for name, pattern, expect in FILE_PAGES:
        found = newest(settings.data_dir.glob(pattern))
        if found is None:
            pages.append(Page(name, None, skipped=f"no {settings.data_dir / pattern} yet"))
        else:
            pages.append(Page(name, found.as_uri(), expect))
    previews = next((p for p in pages if p.name == "marketer_previews_index" and p.url), None)
    if previews is not None:  # the first preview the index links
        folder = Path(urllib.parse.urlparse(previews.url).path).parent
        first = sorted(p for p in folder.rglob("*.html") if p.name != "index.html")[:1]
        if first:
            pages.append(Page("marketer_preview", first[0].as_uri(), []))
        else:
            pages.append(Page("marketer_preview", None, skipped=f"no preview under {folder}"))
    return pages


# --------------------------------------------------------------------------- the browser


def is_remote(url: str) -> bool:
    parsed = urllib.parse.urlparse(url)
    return parsed.scheme in ("http", "https", "ws", "wss") and (parsed.hostname or "") not in LOCAL_HOSTS


def colours(png: bytes) -> int:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    found = image.getcolors(maxcolors=MIN_COLOURS)
    return MIN_COLOURS if found is None else len(found)


def save_png(png: bytes, path: Path) -> None:
    """A screenshot of moderate size: 256 colours, optimised."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def check(browser, page_spec: Page, screenshot: Path) -> list[str]:
    """Open the page with every request to another host aborted; the ways it failed (empty: passed)."""
    page = browser.new_page(viewport=VIEWPORT)
    remote: list[str] = []
    local_failed: list[str] = []

    def route(r):
        if is_remote(r.request.url):
            remote.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)
    page.on("requestfailed", lambda r: local_failed.append(r.url) if r.url.startswith("file:") else None)
    page.on("websocket", lambda ws: remote.append(ws.url) if is_remote(ws.url) else None)  # not routed
    problems: list[str] = []
    try:
        page.goto(page_spec.url, wait_until="load", timeout=PAGE_TIMEOUT_S * 1000)
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        missing = list(page_spec.expect)
        text = ""
        while time.monotonic() < deadline:
            for dialog_button in ("Skip", "Got it"):  # Dagster's and MLflow's first-visit dialogs
                button = page.get_by_role("button", name=dialog_button)
                if button.count():
                    button.first.click()
            text = page.inner_text("body")
            lowered = text.lower()
            missing = [t for t in page_spec.expect if t.lower() not in lowered]
            if not missing and len(text.strip()) >= MIN_TEXT_CHARS:
                break
            time.sleep(1)
        page.wait_for_timeout(2000)  # let graphs finish their layout animation, icon fonts load
        if missing:
            problems.append(f"texts never shown: {missing}")
        if len(text.strip()) < MIN_TEXT_CHARS:
            problems.append(f"{len(text.strip())} characters of text (a blank page?)")
        if page_spec.script and not page.evaluate(page_spec.script):
            problems.append(f"false in the page: {page_spec.script}")
        png = page.screenshot()
        save_png(png, screenshot)
        found = colours(png)
        if found < MIN_COLOURS:
            problems.append(f"the screenshot has {found} colours (a blank page?)")
    except Exception as exc:  # a page that does not load is one failed page, not the end of the check
        problems.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        page.close()
    if remote:
        problems.append(f"{len(remote)} requests to other hosts (aborted): {sorted(set(remote))[:8]}")
    if local_failed:
        problems.append(f"local files missing: {sorted(set(local_failed))[:8]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "screenshots" / "ui", help="where the screenshots go"
    )
    parser.add_argument(
        "--only", help="comma-separated page names or prefixes (dagster, mlflow, data_docs, api, marketer)"
    )
    args = parser.parse_args()
    settings = load_settings()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = settings.data_dir / "ui_smoke"
    logs.mkdir(parents=True, exist_ok=True)
    only = [o.strip() for o in args.only.split(",")] if args.only else None

    def wanted(service_or_page: str) -> bool:
        return only is None or any(service_or_page.startswith(o) or o.startswith(service_or_page) for o in only)

    binary = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(binary).exists():
        raise SystemExit("Chromium is not installed: run scripts/install_chromium.sh (make ui-smoke does)")
    from playwright.sync_api import sync_playwright

    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_TELEMETRY": "false",
        "TESSERA_DATA_DIR": str(settings.data_dir),
    }
    env.setdefault("DAGSTER_HOME", str(ROOT / ".dagster_home"))
    pages: list[Page] = data_docs_pages(settings) + file_pages(settings)
    with ExitStack() as stack:
        started = time.monotonic()
        if wanted("dagster"):
            port = free_port()
            log = logs / "dagster_dev.log"
            dagster = stack.enter_context(
                service(
                    [str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                    env,
                    log,
                )
            )
            wait_for(f"http://127.0.0.1:{port}/graphql", dagster_loaded, "dagster dev", 240, dagster, log)
            pages += dagster_pages(f"http://127.0.0.1:{port}")
        if wanted("mlflow"):
            port = free_port()
            log = logs / "mlflow_ui.log"
            ui = [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", settings.mlflow_tracking_uri]
            mlflow = stack.enter_context(service([*ui, "--host", "127.0.0.1", "--port", str(port)], env, log))
            wait_for(f"http://127.0.0.1:{port}/health", http_ok, "mlflow ui", 120, mlflow, log)
            pages += mlflow_pages(f"http://127.0.0.1:{port}", settings)
        if wanted("api"):
            port = free_port()
            log = logs / "tessera_serve.log"
            serve = [sys.executable, "-m", "tessera.cli", "serve", "--publish-dir", str(settings.publish_dir)]
            api = stack.enter_context(service([*serve, "--host", "127.0.0.1", "--port", str(port)], env, log))
            wait_for(f"http://127.0.0.1:{port}/health", http_ok, "tessera serve", 120, api, log)
            pages += api_pages(f"http://127.0.0.1:{port}")
        print(f"services up in {time.monotonic() - started:.0f} s")
        pages = [p for p in pages if wanted(p.name)]
        failed: dict[str, list[str]] = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_FLAGS[1:])
            try:
                for page in pages:
                    if page.url is None:
                        print(f"SKIPPED {page.name}: {page.skipped}")
                        continue
                    png = out / f"{page.name}.png"
                    problems = check(browser, page, png)
                    size = png.stat().st_size if png.exists() else 0
                    print(f"{'FAILED' if problems else 'passed'} {page.name}: {page.url} -> {png} ({size:,} bytes)")
                    for problem in problems:
                        print(f"    {problem}")
                    if problems:
                        failed[page.name] = problems
            finally:
                browser.close()
    shown = [p for p in pages if p.url]
    skipped = [p.name for p in pages if p.url is None]
    print(
        f"ui-smoke: {len(shown) - len(failed)} of {len(shown)} pages passed"
        + (f", {len(skipped)} skipped ({', '.join(skipped)})" if skipped else "")
        + f"; screenshots in {out}"
    )
    if failed:
        print(f"ui-smoke FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
