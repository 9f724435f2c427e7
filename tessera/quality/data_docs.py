"""Great Expectations Data Docs that render with no network.

Great Expectations 1.24's templates load Bootstrap, jQuery, Font Awesome, bootstrap-table, the
date picker and Vega from public CDNs, and its navigation bar shows a logo fetched from GX's web
assets bucket with the Data Context's id and the time in the query string. Offline, a page then
shows neither the index's tables (bootstrap-table draws them) nor the validation pages' status
icons (Font Awesome), and online each page view reports the context id to a third party.

`make_offline(site_dir)` runs after each build: it copies the vendored files
(data_docs_assets/, see its README) into the site as `static/vendor/`, and rewrites every page's
CDN URL to a relative path to them, the logo to GX's own copy in `static/images/`, drops the
integrity/crossorigin attributes (a page opened from file:// cannot make a CORS request, so the
browser would refuse the very same file), and removes the newsletter footer and the link to GX's
site. A remote URL it does not know (a newer GX template) is left in place and logged as a warning
naming the page and the URL; tests/test_offline_pages.py fails on it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).with_name("data_docs_assets")
VENDOR_DIR = Path("static") / "vendor"  # inside a site
GX_STATE_DIR = "_gx_state"  # the stores under a site (tessera/quality/suites.py): no pages there

# every URL GX's templates (great_expectations/render/view/templates) write -> a file of ASSETS_DIR
CDN_FILES = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js-1.12.9/umd/popper.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1/js/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table-1.19.1/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table-1.19.1/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker-1.9.0/css/bootstrap-datepicker.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker-1.9.0/js/bootstrap-datepicker.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "bootstrap-dark-1.1.0/css/bootstrap-prefers-dark.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome-free-6.6.0/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.33.1/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.23.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.29.0/vega-embed.min.js",
}

# the navigation bar's logo (light and dark), with `?d=<time>&dataContextId=<id>`: GX's own copy
GX_WEB_ASSET = re.compile(
    r"https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/[\w.-]+(\?[^\"')\s]*)?"
)
LOCAL_LOGO = Path("static") / "images" / "logo-long.png"
# GX's favicon.j2 counts one "../" too few on a validation page (four folders deep)
_FAVICON = re.compile(r'href="(?:\.\./)*static/images/favicon\.ico"')
FAVICON = Path("static") / "images" / "favicon.ico"

_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_SRI = re.compile(r"\s+(?:integrity|crossorigin)=\"[^\"]*\"", re.IGNORECASE)
_GX_LINK = re.compile(r"<a href=\"https://greatexpectations\.io/?\">(Great Expectations)</a>")
_NEWSLETTER = re.compile(r"<footer>\s*<p>Stay current on everything GX[^<]*<a [^>]*>[^<]*</a></p>\s*</footer>\s*")
# what makes a browser fetch: an attribute (src, href, srcset, …) or a CSS url() naming another host
REMOTE_REFERENCE = re.compile(
    r"""(?:\b(?:src|href|srcset|poster|data|action)\s*=\s*["']?|url\(\s*["']?|@import\s+["'])\s*(?:https?:)?//(?!(?:127\.0\.0\.1|localhost)[:/])[^"'\s)>]+""",
    re.IGNORECASE,
)


def remote_references(html: str) -> list[str]:
    """The references of a page to another host (a link, a script, an image, a CSS url())."""
    return [m.group(0) for m in REMOTE_REFERENCE.finditer(html)]


def _relative(site_dir: Path, page: Path, target: Path) -> str:
    return Path(os.path.relpath(site_dir / target, page.parent)).as_posix()


def offline_html(html: str, site_dir: Path, page: Path) -> str:
    """The page with every CDN file and GX web asset pointing into the site, the integrity and
    crossorigin attributes of the rewritten tags dropped, and the newsletter footer and the link to
    GX's site removed."""

    def local_tag(match: re.Match) -> str:
        tag = match.group(0)
        rewritten = tag
        for url, file in CDN_FILES.items():
            if f'"{url}"' in rewritten:
                rewritten = rewritten.replace(f'"{url}"', f'"{_relative(site_dir, page, VENDOR_DIR / file)}"')
        return _SRI.sub("", rewritten) if rewritten != tag else tag

    html = _TAG.sub(local_tag, html)
    html = GX_WEB_ASSET.sub(_relative(site_dir, page, LOCAL_LOGO), html)
    html = _FAVICON.sub(f'href="{_relative(site_dir, page, FAVICON)}"', html)
    html = _GX_LINK.sub(r"\1", html)
    return _NEWSLETTER.sub("", html)


def copy_assets(site_dir: Path) -> None:
    """The vendored files under site_dir/static/vendor (only those missing or of another size)."""
    target = site_dir / VENDOR_DIR
    for source in ASSETS_DIR.rglob("*"):
        if not source.is_file():
            continue
        dest = target / source.relative_to(ASSETS_DIR)
        if dest.is_file() and dest.stat().st_size == source.stat().st_size:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)


def pages(site_dir: Path) -> list[Path]:
    return sorted(p for p in site_dir.rglob("*.html") if GX_STATE_DIR not in p.relative_to(site_dir).parts)


def make_offline(site_dir: Path, since: float | None = None) -> list[Path]:
    """Make the Data Docs site at site_dir render with no network (see the module's docstring);
    the pages it rewrote. With `since` (a time.time()), only the pages written since then (a
    build writes the index and the pages of what it rendered), unless the site had no vendored
    files yet: then every page, so a site built before this existed is rewritten whole once."""
    site_dir = site_dir.resolve()
    first = not (site_dir / VENDOR_DIR).is_dir()
    copy_assets(site_dir)
    rewritten = []
    for page in pages(site_dir):
        if since is not None and not first and page.stat().st_mtime < since - 1:  # coarse file clocks
            continue
        html = page.read_text(encoding="utf-8")
        new = offline_html(html, site_dir, page)
        if new != html:
            page.write_text(new, encoding="utf-8")
            rewritten.append(page)
        left = remote_references(new)
        if left:
            log.warning(
                "Data Docs page %s still references another host (a Great Expectations template this "
                "version of tessera does not know; add the file to tessera/quality/data_docs_assets): %s",
                page.relative_to(site_dir),
                sorted(set(left)),
            )
    return rewritten
