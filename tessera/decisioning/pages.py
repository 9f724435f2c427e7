"""The marketer's pages: message previews and the campaign report, as self-contained HTML.

Every page carries its own CSS, no script, font, image or stylesheet from anywhere: they open from
the data directory with no network. The only absolute URL a page may hold is an email's unsubscribe
link (TESSERA_UNSUBSCRIBE_URL, tessera/decisioning/mailing.py).

An email is shown in a mail client's frame (subject, From:, the preheader a mail client shows after
the subject, then the body with its footer); a web banner is drawn as a banner in its layout, a
push as a phone notification; the raw JSON of both stays below, folded, for developers.
"""

from __future__ import annotations

import html
import json
import re

CHANNEL_NAMES = {"email": "Email", "web_banner": "Web banner", "push": "Push"}
PREHEADER_CHARS = 110

CSS = """
*{box-sizing:border-box}
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f3f4f6;color:#1f2937;line-height:1.45}
header.top{background:#1e293b;color:#f8fafc;padding:18px 32px}
header.top h1{margin:0;font-size:22px}
header.top p{margin:4px 0 0;color:#cbd5e1;font-size:14px}
main{padding:24px 32px;max-width:1200px}
h2{font-size:19px;margin:28px 0 8px}
h3{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0 16px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
th,td{padding:8px 12px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top;font-size:14px}
th{background:#f9fafb;font-weight:600;color:#374151}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
small,.muted{color:#6b7280}
.card{background:#fff;border-radius:8px;padding:16px 20px;margin:12px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.warn{background:#fef3c7;border-left:4px solid #d97706;padding:10px 14px;margin:12px 0;border-radius:4px;font-size:14px}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#e0e7ff;color:#3730a3;margin-left:6px}
.bar{display:inline-block;height:10px;background:#6366f1;border-radius:2px;vertical-align:middle;margin-right:6px}
.mail{background:#fff;border:1px solid #d1d5db;border-radius:8px;max-width:680px;margin:12px 0;overflow:hidden}
.mail .head{background:#f9fafb;border-bottom:1px solid #e5e7eb;padding:12px 16px;font-size:14px}
.mail .head div{margin:2px 0}
.mail .head .subject{font-size:17px;font-weight:600;color:#111827}
.mail .head .pre{color:#6b7280;font-style:italic}
.mail .body{padding:16px 20px;font-size:15px}
.mail .body .footer,.mail .body footer{border-top:1px solid #e5e7eb;margin-top:18px;padding-top:10px;font-size:12px;color:#6b7280}
.banner{border-radius:10px;padding:26px 30px;margin:12px 0;max-width:820px;color:#fff;background:#4f46e5}
.banner.hero{background:#0f766e;min-height:150px}
.banner.product{background:#9a3412}
.banner.ribbon{background:#7c2d12;padding:14px 24px}
.banner.carousel{background:#1e3a8a}
.banner .headline{font-size:24px;font-weight:700;margin:0 0 12px}
.banner .cta{display:inline-block;background:#fff;color:#111827;padding:8px 16px;border-radius:6px;font-weight:600;font-size:14px}
.banner .tiles{display:flex;gap:12px;margin-top:8px}
.banner .tile{background:rgba(255,255,255,.15);border-radius:6px;padding:10px 12px;min-width:150px;font-size:14px}
.phone{background:#111827;border-radius:22px;padding:18px;max-width:380px;margin:12px 0}
.phone .note{background:#f9fafb;border-radius:12px;padding:10px 14px;font-size:14px}
.phone .note b{display:block}
details{margin:8px 0;font-size:13px}
pre{background:#f9fafb;border:1px solid #e5e7eb;padding:8px;overflow:auto}
"""


def title(action_id: str) -> str:
    """An action id as a title: cart_abandonment_email -> Cart abandonment email."""
    words = action_id.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def page(heading: str, subheading: str, content: str) -> str:
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(heading)}</title><style>{CSS}</style></head><body>\n"
        f"<header class='top'><h1>{html.escape(heading)}</h1><p>{html.escape(subheading)}</p></header>\n"
        f"<main>\n{content}\n</main></body></html>\n"
    )


def body_inner(body: str) -> str:
    """The content of an email body's <body> (the whole text when it has none)."""
    found = re.search(r"<body[^>]*>(.*)</body>", body, flags=re.S | re.I)
    return found.group(1) if found else body


def preheader(body: str) -> str:
    """What a mail client shows after the subject: the start of the body's text (the footer left out)."""
    content = re.sub(r"<(div|footer)[^>]*class=[\"']?footer.*", "", body_inner(body), flags=re.S | re.I)
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", content)).split())
    return text if len(text) <= PREHEADER_CHARS else text[: PREHEADER_CHARS - 1].rstrip() + "…"


def _text(value) -> str:
    """A banner value as HTML: values from templates are escaped already, literals are not."""
    return html.escape(html.unescape(str(value)))


def email_frame(subject: str | None, body: str, shop: dict) -> str:
    return (
        "<div class='mail'><div class='head'>"
        f"<div class='subject'>{html.escape(subject or '')}</div>"
        f"<div><b>From:</b> {html.escape(shop['sender'])}</div>"
        "<div><b>To:</b> <span class='muted'>the customer's address</span></div>"
        f"<div class='pre'>{html.escape(preheader(body))}</div>"
        f"</div><div class='body'>{body_inner(body)}</div></div>"
    )


def banner(body: str) -> str:
    data = json.loads(body)
    layout = re.sub(r"[^a-z_-]", "", str(data.get("layout", "")).lower()) or "hero"
    parts = [f"<div class='banner {layout}'>"]
    if data.get("headline"):
        parts.append(f"<div class='headline'>{_text(data['headline'])}</div>")
    names = [v for k, v in data.items() if k.endswith("product_name") and v]
    if names:
        parts.append("<div class='tiles'>" + "".join(f"<div class='tile'>{_text(n)}</div>" for n in names) + "</div>")
    elif data.get("category") and layout != "hero":
        parts.append(f"<p>{_text(data['category'])}</p>")
    if data.get("call_to_action"):
        parts.append(f"<span class='cta'>{_text(data['call_to_action'])}</span>")
    parts.append("</div>")
    return "".join(parts)


def push(subject: str | None, body: str) -> str:
    data = json.loads(body)
    return (
        "<div class='phone'><div class='note'>"
        f"<b>{html.escape(subject or '')}</b>{_text(data.get('body', ''))}</div></div>"
    )


def message(channel: str, subject: str | None, body: str, shop: dict) -> str:
    """One message drawn as its customer sees it, the JSON of a banner or push folded below."""
    if channel == "email":
        return email_frame(subject, body, shop)
    drawn = banner(body) if channel == "web_banner" else push(subject, body)
    raw = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    return drawn + f"<details><summary>payload (JSON)</summary><pre>{html.escape(raw)}</pre></details>"


def message_page(heading: str, channel: str, subject: str | None, body: str, shop: dict) -> str:
    return page(heading, f"{CHANNEL_NAMES[channel]} preview", message(channel, subject, body, shop))


def index_page(rows: str) -> str:
    return page(
        "Message previews",
        "The first messages of each action and variant, as the customer sees them.",
        "<table><tr><th>action</th><th>channel</th><th>variant</th><th>subject</th><th>message</th></tr>\n"
        f"{rows}\n</table>",
    )
