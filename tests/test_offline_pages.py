"""Pages that must render with no network: Great Expectations Data Docs (issue 39).

Before, every Data Docs page loaded Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from
public CDNs and a logo from GX's web-assets bucket carrying the Data Context's id: offline, the
index showed only its two tab links (bootstrap-table draws the tables) and validation pages lost
their status icons.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import duckdb
import great_expectations
import pytest

from tessera.quality.data_docs import ASSETS_DIR, CDN_FILES, VENDOR_DIR, make_offline, remote_references
from tessera.quality.suites import gate_parameters, validate_table

GX_TEMPLATES = Path(great_expectations.__file__).parent / "render" / "view" / "templates"
LOCAL_REFERENCE = re.compile(r"""\b(?:src|href)="(?!https?:|//|#|data:|javascript:|mailto:)([^"?#]+)""")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A Data Docs site of one failing and one passing validation, built by the real code path."""
    root = tmp_path_factory.mktemp("offline_docs")
    con = duckdb.connect()
    con.execute("create schema shop")
    con.execute(
        "create table shop.orders as select * from (values ('o1', 'c1'), ('o2', null), ('o3', 'c3')) t(order_id, customer_key)"
    )
    suite = root / "suite.json"
    suite.write_text(
        json.dumps(
            {
                "name": "test_orders",
                "meta": {"table": "shop.orders"},
                "expectations": [
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "order_id"}},
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_key"}},
                ],
            }
        )
    )
    docs = root / "docs"
    params = gate_parameters(None, 0.5, "2000-01-01")
    failed = validate_table(con, "shop.orders", suite, 1000, parameters=params, docs_dir=docs, run_name="run-1")
    con.execute("delete from shop.orders where customer_key is null")
    passed = validate_table(con, "shop.orders", suite, 1000, parameters=params, docs_dir=docs, run_name="run-2")
    assert not failed.success and passed.success
    return docs


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "_gx_state" not in p.parts)


def test_data_docs_pages_name_no_other_host(site):
    pages = _pages(site)
    # the index, the suite's page and the two validations' pages
    assert len(pages) == 4
    for page in pages:
        html = page.read_text()
        assert remote_references(html) == [], page
        assert re.findall(r"https?://[^\s\"'<>)]+", html) == [], page  # not even a link
        assert "dataContextId" not in html and "integrity=" not in html


def test_every_local_file_a_data_docs_page_loads_is_in_the_site(site):
    for page in _pages(site):
        html = page.read_text()
        targets = set(LOCAL_REFERENCE.findall(html))
        assert any("static/vendor/jquery-3.7.1/jquery.min.js" in t for t in targets), page
        missing = [t for t in targets if not (page.parent / t).resolve().is_file()]
        assert missing == [], f"{page}: {missing}"


def test_the_validation_page_names_the_table_it_validated(site):
    page = next(p for p in _pages(site) if "run-1" in p.parts)
    html = page.read_text()
    assert "Data asset: shop.orders" in html and "Data asset: None" not in html


def test_rewriting_a_site_twice_changes_nothing(site):
    assert make_offline(site) == []


def test_every_cdn_url_of_the_gx_templates_has_a_vendored_file():
    # a newer Great Expectations that names another CDN file fails here, before any page is built
    named = set()
    for template in GX_TEMPLATES.glob("*.j2"):
        named |= set(re.findall(r"""<(?:script|link)\b[^>]*?(?:src|href)="(https?://[^"]+)\"""", template.read_text()))
    assert named, "no CDN URL found in the templates: has Great Expectations moved them?"
    assert named == set(CDN_FILES)
    assert all((ASSETS_DIR / f).is_file() for f in CDN_FILES.values())
    fonts = re.findall(
        r"url\(\.\./webfonts/([\w.-]+\.woff2)\)",
        (
            ASSETS_DIR / CDN_FILES[next(u for u in CDN_FILES if u.endswith("font-awesome/6.6.0/css/all.min.css"))]
        ).read_text(),
    )
    assert fonts and all((ASSETS_DIR / "fontawesome-free-6.6.0" / "webfonts" / f).is_file() for f in fonts)


def test_vendored_scripts_are_the_files_gx_pins_by_hash():
    pinned = re.findall(
        r'<script src="([^"]+)" integrity="sha384-([^"]+)"', (GX_TEMPLATES / "js_script_imports.j2").read_text()
    )
    assert len(pinned) == 2  # popper.js and bootstrap.js
    for url, digest in pinned:
        data = (ASSETS_DIR / CDN_FILES[url]).read_bytes()
        assert base64.b64encode(hashlib.sha384(data).digest()).decode() == digest, url


@pytest.mark.parametrize(
    ("html", "remote"),
    [
        ('<script src="https://cdn.example.com/a.js"></script>', ['src="https://cdn.example.com/a.js']),
        ("<link rel=stylesheet href=//cdn.example.com/a.css>", ["href=//cdn.example.com/a.css"]),
        (
            "<style>a { background: url('https://img.example.com/l.png') }</style>",
            ["url('https://img.example.com/l.png"],
        ),
        ('<img src="http://127.0.0.1:8000/logo.png"><a href="http://localhost:3000/">x</a>', []),
        ('<img src="../static/images/logo-long.png">', []),
        ("<td>see https://example.com/terms in the data</td>", []),  # a value shown as text fetches nothing
    ],
)
def test_remote_references_are_what_a_browser_would_fetch_from_another_host(html, remote):
    assert remote_references(html) == remote


def test_vendor_folder_sits_under_the_sites_static_folder(site):
    assert (site / VENDOR_DIR / "fontawesome-free-6.6.0" / "webfonts" / "fa-solid-900.woff2").is_file()
    assert (site / VENDOR_DIR / "jquery-3.7.1" / "LICENSE.txt").is_file()


def _ui_smoke():
    """scripts/ui_smoke.py as a module (scripts/ is no package)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "ui_smoke.py"
    spec = importlib.util.spec_from_file_location("ui_smoke", path)
    if "ui_smoke" not in sys.modules:  # its dataclass looks its module up there
        module = importlib.util.module_from_spec(spec)
        sys.modules["ui_smoke"] = module
        spec.loader.exec_module(module)
    return sys.modules["ui_smoke"]


def test_data_docs_render_in_chromium_with_every_remote_request_aborted(site, tmp_path, monkeypatch):
    # the check `make ui-smoke` runs, on the small site: the tables are drawn (bootstrap-table's
    # "Showing 1 to"), the status icons' font loaded, and nothing was asked of another host
    from playwright.sync_api import sync_playwright

    smoke = _ui_smoke()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(chromium).exists(), "Chromium is not installed: run scripts/install_chromium.sh (make test does)"
    validation = next(p for p in _pages(site) if "run-1" in p.parts)
    control = tmp_path / "control.html"
    control.write_text(
        "<html><body><script src='https://cdn.example.com/x.js'></script>" + "<p>some text</p>" * 20 + "</body></html>"
    )
    pages = [
        smoke.Page("index", (site / "index.html").as_uri(), ["test_orders", "run-2", "Showing 1 to"]),
        smoke.Page(
            "validation",
            validation.as_uri(),
            ["Expectation Validation Result", "Data asset: shop.orders"],
            script=smoke.FONT_AWESOME_LOADED,
        ),
        smoke.Page("control", control.as_uri(), ["some text"]),
    ]
    monkeypatch.setattr(smoke, "PAGE_TIMEOUT_S", 10)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=smoke.CHROMIUM_FLAGS[1:])
        try:
            problems = {p.name: smoke.check(browser, p, tmp_path / f"{p.name}.png") for p in pages}
        finally:
            browser.close()
    assert problems["index"] == [] and problems["validation"] == []
    # a page asking a CDN fails, naming the URL; a page of 20 short lines on white is not blank
    assert problems["control"] == ["1 requests to other hosts (aborted): ['https://cdn.example.com/x.js']"]


def test_a_site_built_before_is_rewritten_whole_once_then_only_its_new_pages(tmp_path):
    import os
    import time

    old = '<html><head><script src="https://code.jquery.com/jquery-3.7.1.min.js"></script></head></html>'
    site = tmp_path / "docs"
    (site / "validations" / "s").mkdir(parents=True)
    for page in (site / "index.html", site / "validations" / "s" / "a.html"):
        page.write_text(old)
        os.utime(page, (time.time() - 3600, time.time() - 3600))
    # no static/vendor yet: a site from before, every page is rewritten whatever `since` says
    assert len(make_offline(site, since=time.time())) == 2
    assert 'src="../../static/vendor/jquery-3.7.1/jquery.min.js"' in (site / "validations" / "s" / "a.html").read_text()
    stale = site / "validations" / "s" / "b.html"
    stale.write_text(old)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fresh = site / "validations" / "s" / "c.html"
    fresh.write_text(old)
    assert make_offline(site, since=time.time() - 1) == [fresh.resolve()]
