"""The demo shop in Chromium (Playwright, as scripts/ui_smoke.py): the storefront snippet sends
its events to the real collector (POST /v1/events), the real state worker applies them from the
stream, and the recommendation widget changes with the session.

Started here: a Redis of the test's own (the redis_server fixture), the serving API with the
collector on (create_app(realtime=...), uvicorn on a free port of 127.0.0.1), one StateWorker
thread. The page browses a product, adds it to the cart, and the widget must show the session's
products, then the cart's complements. Screenshots go to $TESSERA_SCREENSHOTS_DIR (default: the
test's temporary directory, printed).

Needs Debian's Chromium (scripts/install_chromium.sh) and the `playwright` package (the test
extra); `make test` installs both, and without them the test fails saying what to install.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import orjson
import pytest

from tessera.realtime.redis_server import free_port
from tessera.realtime.store import connect
from tessera.realtime.worker import StateWorker
from tessera.serving import create_app
from tessera.settings import RealtimeSettings
from tests.test_visitor_recs import POPULAR, SALT, publish

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]  # fmt: skip
WAIT_MS = 15_000  # the longest wait for a condition on the page (event -> worker -> widget takes about a second)


@pytest.fixture
def shop(tmp_path, redis_server, redis_client):
    """The API (collector on) and a state worker over one Redis; yields the shop's base URL."""
    import uvicorn

    publish_dir = tmp_path / "publish"
    publish(publish_dir)
    settings = RealtimeSettings(redis_url=redis_server.url)
    app = create_app(publish_dir, reload_seconds=0, mode="demo", realtime=settings, salt=SALT)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    api = threading.Thread(target=server.run, name="api", daemon=True)
    api.start()
    store = connect(settings, SALT, socket_timeout=None)  # the worker blocks on the stream
    landing = tmp_path / "landing"
    worker = StateWorker(store.stream, store.state, store.suppression, landing, consumer="browser-test",
                         flush_max_seconds=0.5)  # fmt: skip
    stop = threading.Event()
    work = threading.Thread(target=worker.run, args=(stop,), kwargs={"block_ms": 100}, name="worker", daemon=True)
    work.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not api.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}", landing, app
    finally:
        stop.set()
        work.join(10)
        server.should_exit = True
        api.join(10)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    where = Path(os.environ.get("TESSERA_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {where}")
    return where


def widget_products(page) -> list[tuple[str, str]]:
    return [
        (li.get_attribute("data-product-id"), li.get_attribute("data-source"))
        for li in page.query_selector_all("#tessera-recs li")
    ]


def test_the_widget_changes_with_the_session_as_the_shop_is_browsed(shop, screenshots):
    from playwright import sync_api

    assert Path(CHROMIUM).exists(), "Chromium is not installed: run scripts/install_chromium.sh (make test does)"
    base, landing, app = shop
    sent: list[dict] = []
    elsewhere: list[str] = []

    def on_request(request):
        if not request.url.startswith(base):
            elsewhere.append(request.url)
        elif request.method == "POST" and request.url.endswith("/v1/events"):
            sent.extend(orjson.loads(request.post_data_buffer)["batch"])

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("request", on_request)
            # shorter waits than a shop's defaults: events flushed every 200 ms, a dwell after 3 s
            page.goto(f"{base}/demo/?flush_ms=200&dwell_seconds=3")

            # 1. a new visitor: the popular products, marked as the fallback
            page.wait_for_selector("#tessera-recs[data-source='popular_fallback'] li", timeout=WAIT_MS)
            assert [p for p, _ in widget_products(page)] == POPULAR
            page.screenshot(path=str(screenshots / "01_new_visitor.png"))
            anonymous_id = page.evaluate("tessera.anonymousId()")

            # 2. a product viewed: collector -> stream -> worker -> state; the widget shows the session
            page.click(".card[data-product-id='m1']")
            page.wait_for_selector("#tessera-recs[data-views='1'][data-source='session_blend'] li", timeout=WAIT_MS)
            viewed = widget_products(page)
            assert "m1" not in [p for p, _ in viewed]
            assert {p for p, s in viewed if s == "session_knn"} == {"m2", "m3", "t1", "x1"}
            assert "More in mugs" in page.inner_text("#tessera-recs")
            page.screenshot(path=str(screenshots / "02_product_viewed.png"))

            # 3. added to the cart: the cart's complement (bought together with m1) appears
            page.click("#add-to-cart")
            page.wait_for_selector("#tessera-recs[data-cart='1'] li[data-product-id='t2']", timeout=WAIT_MS)
            carted = widget_products(page)
            assert carted != viewed and ("t2", "cart_complement") in carted
            assert "Goes with Blue mug" in page.inner_text("#tessera-recs li[data-product-id='t2']")
            page.screenshot(path=str(screenshots / "03_added_to_cart.png"))

            # 4. three seconds on the product page: the dwell event is sent
            deadline = time.monotonic() + WAIT_MS / 1000
            while not any(m.get("event") == "Product Dwell" for m in sent) and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            page.wait_for_function("() => tessera.queued() === 0", timeout=WAIT_MS)
        finally:
            browser.close()

    # what the snippet sent: Segment messages with a messageId each, this visitor's
    events = {m["event"] for m in sent if m["type"] == "track"}
    assert {"Product Viewed", "Product Added", "Product Dwell"} <= events
    assert {m["type"] for m in sent} >= {"page", "track"}
    assert len({m["messageId"] for m in sent}) == len(sent)
    assert {m["anonymousId"] for m in sent} == {anonymous_id}
    dwell = next(m for m in sent if m.get("event") == "Product Dwell")
    assert dwell["properties"] == {"product_id": "m1", "category": "mugs", "dwell_seconds": 3}
    assert elsewhere == []  # the page, the snippet and its data come from the API alone

    # and the same events reached the batch side: the worker's landing files
    state = app.state.realtime.state.get(f"a:{anonymous_id}")
    assert (state.views, state.cart) == (["m1"], {"m1": 1})
    deadline = time.monotonic() + WAIT_MS / 1000
    rows: list[dict] = []
    while time.monotonic() < deadline and not {"product_view", "add_to_cart"} <= {r["event_type"] for r in rows}:
        time.sleep(0.2)
        rows = [
            orjson.loads(line)
            for f in sorted((landing / "events").glob("*.jsonl"))
            for line in f.read_bytes().splitlines()
        ]
    landed = {(r["event_type"], r["product_id"]) for r in rows if r["anonymous_id"] == anonymous_id}
    assert {("product_view", "m1"), ("add_to_cart", "m1")} <= landed
