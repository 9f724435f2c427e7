"""Render the messages of the decisions to send: subject and body per message.

For each action and variant, one query gathers the render context of its messages (customer
attributes, top recommendations, cart items: only the parts its templates read), streamed in
Arrow batches; each message is rendered by the compiled template.

Written: decisioning.messages (message_id, customer_key, channel, action_id, variant_id, subject,
body_ref, content_type, body, decided_on). body_ref is the sha256 of the body, the reference the
published outbox carries; the bodies themselves go to the outbox snapshot's message_bodies export.
A body is kept with its message, not once per distinct text: it greets a person by name, so it
must leave with that person's rows on erasure (tessera/privacy/erasure.py removes rows by customer_key and
customer_pkey), which a body shared by several customers could not.

message_id comes from the decision (tessera/decisioning/decide.py). An email tool reports clicks with it as the campaign_id
(docs/decisioning.md), which is how the bandit learns.

Recommendations in a message are the customer's own only with the channel's personalisation
consent (email: email/personalization; web banner and push: web/personalization); otherwise the
popular products, ranked as the serving API's fallback (tessera/publish/popular.py).
"""

from __future__ import annotations

import hashlib
import html
import multiprocessing
import os
import re
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from tessera import sql
from tessera.decisioning import pages
from tessera.decisioning.catalogue import Action, Catalogue, Variant
from tessera.decisioning.decide import CART_PARAMS, cart_sql
from tessera.decisioning.mailing import Mailing, mailing_for
from tessera.decisioning.templates import CUSTOMER, Line, Template
from tessera.privacy import pseudonym
from tessera.publish.popular import POPULAR_PRODUCTS_SQL
from tessera.sql import ident

CONTENT_TYPES = {"html": "text/html", "json": "application/json"}
PERSONALISATION = {"email": "email", "web_banner": "web", "push": "web"}
BATCH_ROWS = 50_000
RECOMMENDATIONS = 3
CART_ITEMS = 5
INDEX = "index.html"
INDEX_ROW = "<tr><td>"  # how a preview's line in INDEX starts
# values shorter than this are not searched for in previews (a substring of too much else)
MIN_ERASE_CHARS = 6

# a list of products in the shape templates read (templates.PRODUCT), best first
PRODUCT_LIST = (
    "list(struct_pack(product_id := product_id, product_name := product_name, category := category, rank := rank) "
    "order by rank) as items"
)

MESSAGES_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("customer_key", pa.string()),
        ("channel", pa.string()),
        ("action_id", pa.string()),
        ("variant_id", pa.string()),
        ("subject", pa.string()),
        ("body_ref", pa.string()),
        ("content_type", pa.string()),
        ("body", pa.string()),
        ("decided_on", pa.date32()),
    ]
)


def prepare_lists(con, catalogue: Catalogue) -> None:
    """Scratch tables (decisioning.render_*, dropped after rendering) of the lists templates read: each
    customer's top recommended active products,
    the popular ones, and the products in each cart."""
    con.execute(
        f"""
        create or replace table decisioning.render_recommendations as
        select customer_key,
            {PRODUCT_LIST}
        from (
            select r.customer_key, r.product_id, p.product_name, p.category,
                row_number() over (partition by r.customer_key order by r.rank) as rank
            from ml.recommendation_candidates as r
            inner join marts.dim_products as p on p.product_id = r.product_id and p.is_active
            where r.customer_key in (select customer_key from decisioning.decisions where decision = 'send')
        )
        where rank <= $recommendations
        group by customer_key
    """,
        {"recommendations": RECOMMENDATIONS},
    )
    con.execute(
        f"""
        create or replace table decisioning.render_popular as
        select {PRODUCT_LIST}
        from ({POPULAR_PRODUCTS_SQL})
        where rank <= $recommendations
    """,
        {"recommendations": RECOMMENDATIONS},
    )
    uses_cart = any("cart_items" in a.uses() for a in catalogue.batch_actions)
    as_of = "(select cast(max(decided_on) as timestamp) from decisioning.decisions)"
    carts = (
        cart_sql(as_of)
        if uses_cart
        else "select null as customer_key, null as product_id, null as added_at where false"
    )
    con.execute(
        f"""
        create or replace table decisioning.render_cart as
        select customer_key,
            {PRODUCT_LIST}
        from (
            select c.customer_key, c.product_id, p.product_name, p.category,
                row_number() over (partition by c.customer_key order by c.added_at desc, c.product_id) as rank
            from ({carts}) as c
            inner join marts.dim_products as p on p.product_id = c.product_id
            where c.customer_key in (select customer_key from decisioning.decisions where decision = 'send')
        )
        where rank <= $cart_items
        group by customer_key
    """,
        {"cart_items": CART_ITEMS, **(CART_PARAMS if uses_cart else {})},
    )


def static_context(action: Action, variant: Variant, mailing: Mailing) -> dict:
    """The part of a message's render context that is the same for every customer of one action and
    variant: the action, the variant, its offer and the shop. The daily render and the realtime
    trigger worker (tessera/realtime/triggers.py) both start from it."""
    return {
        "action": {"id": action.id, "channel": action.channel},
        "variant": {"id": variant.id},
        "offer": None
        if action.offer is None
        else {
            "code": action.offer.code,
            "description": action.offer.description,
            "discount_percent": action.offer.discount_percent,
        },
        "shop": mailing.shop,
    }


def installed_salt(con) -> str:
    """The pseudonym salt installed on `con` (tessera/privacy/pseudonym.install): the one its
    customer_pkey() uses, so unsubscribe tokens name the keys the outbox publishes."""
    salt = con.execute(f"select getvariable('{pseudonym.SALT_VARIABLE}')").fetchall()[0][0]
    if not salt:
        raise RuntimeError(
            "no pseudonym salt on this connection (tessera/privacy/pseudonym.install): "
            "every email's unsubscribe token is signed with it"
        )
    return salt


def context_sql(action: Action, variant: Variant) -> tuple[str, dict]:
    """The render contexts of one variant's messages to send, and the values the SQL binds."""
    return sql.load(__file__, "render_context"), {
        "purpose_channel": PERSONALISATION[action.channel],
        "action_id": action.id,
        "variant_id": variant.id,
    }


@dataclass
class Rendered:
    messages: int = 0
    bodies: int = 0  # distinct body texts
    per_variant: dict | None = None
    previews: list | None = None  # (action, variant, message_id, subject, path)


def render_batch(
    template: Template,
    subject: Line | None,
    static: dict,
    channel: str,
    action_id: str,
    variant_id: str,
    content_type: str,
    mailing: Mailing,
    batch: pa.RecordBatch,
) -> pa.RecordBatch:
    """The messages of one batch of render contexts (context_sql's columns), in its row order: a
    pure function of its arguments, so a worker process gives the same rows as the caller would.
    An email's context holds its customer's unsubscribe link (tessera/decisioning/mailing.py)."""
    subjects, refs, bodies = [], [], []
    columns = batch.to_pydict()
    customers = zip(*(columns[f] for f in CUSTOMER), strict=True)  # the customer fields templates may read
    email = channel == "email"
    for key, values, recommendations, cart_items in zip(
        columns["customer_key"], customers, columns["recommendations"], columns["cart_items"], strict=True
    ):
        context = {
            **static,
            "customer": dict(zip(CUSTOMER, values, strict=True)),
            "recommendations": recommendations or [],
            "cart_items": cart_items,
            "unsubscribe": mailing.unsubscribe(channel, customer_key=key) if email else None,
        }
        body = template.render(context)
        subjects.append(subject.render(context) if subject else None)
        refs.append("sha256:" + hashlib.sha256(body.encode()).hexdigest())
        bodies.append(body)
    n = batch.num_rows
    return pa.record_batch(
        [batch.column("message_id"), batch.column("customer_key"), pa.array([channel] * n, pa.string()),
         pa.array([action_id] * n, pa.string()), pa.array([variant_id] * n, pa.string()),
         pa.array(subjects, pa.string()), pa.array(refs, pa.string()), pa.array([content_type] * n, pa.string()),
         pa.array(bodies, pa.string()), batch.column("decided_on")],
        schema=MESSAGES_SCHEMA,
    )  # fmt: skip


def render_messages(
    con,
    catalogue: Catalogue,
    preview_dir: Path | None,
    previews_per_variant: int = 3,
    workers: int = 1,
    mailing: Mailing | None = None,
) -> Rendered:
    """Render every message to send into decisioning.messages;
    write the first `previews_per_variant` of each variant (by message_id) as files.
    `mailing`: the sender and the unsubscribe links' salt; by default the salt installed on `con`
    and the environment's MailingSettings.

    With workers > 1, batches are rendered by that many worker processes (Jinja holds the GIL)
    while this process reads the next contexts and inserts finished batches, in batch order: the
    same table as one process (rendering is single-core work: docs/scaling.md)."""
    con.execute(
        "create or replace table decisioning.messages (message_id varchar, customer_key varchar, channel varchar, "
        "action_id varchar, variant_id varchar, subject varchar, body_ref varchar, content_type varchar, body varchar, "
        "decided_on date)"
    )
    mailing = mailing or mailing_for(installed_salt(con))
    prepare_lists(con, catalogue)
    out = Rendered(per_variant={}, previews=[])
    seen: set[str] = set()
    pool = (
        ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        if workers > 1
        else None
    )
    try:
        # realtime actions are rendered by the trigger worker as they fire (tessera/realtime/triggers.py)
        for action in catalogue.batch_actions:
            for variant in action.variants:
                static = static_context(action, variant, mailing)
                args = (variant.template, variant.subject, static, action.channel, action.id, variant.id,
                        CONTENT_TYPES[variant.template.kind], mailing)  # fmt: skip
                count = 0

                def insert(messages: pa.RecordBatch, action: Action = action, variant: Variant = variant) -> None:
                    nonlocal count
                    seen.update(messages.column("body_ref").to_pylist())
                    if preview_dir is not None and count < previews_per_variant:
                        first = messages.slice(0, previews_per_variant - count).to_pydict()
                        for message_id, subject, body in zip(
                            first["message_id"], first["subject"], first["body"], strict=True
                        ):
                            out.previews.append(
                                _write_preview(preview_dir, action, variant, message_id, subject, body, mailing)
                            )
                    con.register("__render_messages", messages)
                    try:
                        con.execute("insert into decisioning.messages select * from __render_messages")
                    finally:
                        con.unregister("__render_messages")
                    count += messages.num_rows

                # read on a cursor (its own connection to the same database) while writing on `con`
                cursor = con.cursor()
                query, params = context_sql(action, variant)
                reader = cursor.sql(query, params=params).to_arrow_reader(BATCH_ROWS)
                pending: deque = deque()
                for batch in reader:
                    if pool is None:
                        insert(render_batch(*args, batch))
                        continue
                    pending.append(pool.submit(render_batch, *args, batch))
                    while len(pending) > 2 * workers:  # bounded: at most this many batches in flight
                        insert(pending.popleft().result())
                while pending:
                    insert(pending.popleft().result())
                cursor.close()
                out.messages += count
                out.per_variant[f"{action.id}/{variant.id}"] = count
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    for name in ("recommendations", "popular", "cart"):
        con.execute(f"drop table {ident('decisioning', 'render_' + name)}")
    out.bodies = len(seen)
    if preview_dir is not None:
        _write_index(preview_dir, out.previews, catalogue)
    return out


def _write_preview(root: Path, action: Action, variant: Variant, message_id: str, subject, body: str, mailing: Mailing):
    """One message as a page (pages.message_page): an email in its frame, a banner or push drawn."""
    path = root / action.id / variant.id / f"{message_id}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    title = f"{pages.title(action.id)}, variant {variant.id}"
    path.write_text(pages.message_page(title, action.channel, subject, body, mailing.shop), encoding="utf-8")
    return (action.id, variant.id, message_id, subject, path)


def _write_index(root: Path, previews: list, catalogue: Catalogue) -> Path:
    """index.html: every preview under its action's readable title, with variant and subject
    (escaped), linked; one row (INDEX_ROW) per line, which is how erase_previews finds them again."""
    root.mkdir(parents=True, exist_ok=True)
    numbers: dict[tuple[str, str], int] = {}
    rows = []
    for a, v, m, s, p in previews:
        n = numbers[(a, v)] = numbers.get((a, v), 0) + 1
        action = catalogue.action(a)
        rows.append(
            f"{INDEX_ROW}<b>{html.escape(pages.title(a))}</b><br><small>{html.escape(action.description)}</small></td>"
            f"<td>{html.escape(pages.CHANNEL_NAMES[action.channel])}</td><td>{html.escape(v)}</td>"
            f"<td>{html.escape(s or '(no subject: ' + pages.CHANNEL_NAMES[action.channel].lower() + ')')}</td>"
            f'<td><a href="{html.escape(str(p.relative_to(root)))}" data-message="{html.escape(m)}">preview {n}</a></td></tr>'
        )
    index = root / INDEX
    index.write_text(pages.index_page("\n".join(rows)), encoding="utf-8")
    return index


def _mentions(text: str, needles: list[str]) -> bool:
    """`text`, as written or with its HTML entities resolved (bodies and the index are escaped),
    holds one of the case-folded `needles`."""
    folded = text.casefold()
    unescaped = html.unescape(text).casefold()
    return any(n in folded or n in unescaped for n in needles)


def erase_previews(preview_root: Path, values: Iterable[str]) -> dict[str, int]:
    """Remove from every day's previews under `preview_root` (<root>/<day>/<action>/<variant>/<message>)
    each file whose path or text mentions one of `values`, case-insensitively, and the rows of that
    day's index.html naming one of them or a file no longer there. Values shorter than
    MIN_ERASE_CHARS are not searched for. An erased person's previews of earlier days are
    rendered once and never written again, so the erasure removes them here.

    Returns {"files_removed": n, "days_touched": n}."""
    needles = sorted({v.casefold() for v in values if v is not None and len(v) >= MIN_ERASE_CHARS})
    counts = {"files_removed": 0, "days_touched": 0}
    if not needles or not preview_root.is_dir():
        return counts
    for day in sorted(p for p in preview_root.iterdir() if p.is_dir()):
        touched = False
        for path in sorted(p for p in day.rglob("*") if p.is_file() and p != day / INDEX):
            text = path.read_text(encoding="utf-8", errors="replace")
            if _mentions(str(path.relative_to(day)), needles) or _mentions(text, needles):
                path.unlink()
                counts["files_removed"] += 1
                touched = True
        for folder in sorted((p for p in day.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
        index = day / INDEX
        if index.is_file():
            lines = index.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [line for line in lines if not line.startswith(INDEX_ROW) or _index_row_stays(day, line, needles)]
            if kept != lines:
                _replace_text(index, "".join(kept))
                touched = True
        if touched:
            counts["days_touched"] += 1
    return counts


def _index_row_stays(day: Path, line: str, needles: list[str]) -> bool:
    """An index row stays if it names none of the needles and the preview it links is still there."""
    link = re.search(r'href="([^"]*)"', line)
    return not _mentions(line, needles) and link is not None and (day / html.unescape(link.group(1))).is_file()


def _replace_text(path: Path, text: str) -> None:
    """Write `path` aside and rename it over the old one: a crash leaves the old or the new index."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)
