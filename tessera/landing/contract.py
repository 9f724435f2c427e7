"""The landing contract: which sources exist and which columns each one delivers.

One folder per source under the landing directory. Each folder holds any number of files in CSV
(``.csv``), Parquet (``.parquet``) or JSON Lines (``.jsonl`` / ``.ndjson``). Raw tables keep every
contract column as text, exactly as delivered, plus lineage columns; typing and normalisation
happen in the dbt staging models, where a value that does not parse becomes a flagged row rather
than a lost one. docs/landing_contract.md is the human-readable version of this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    description: str
    required: bool = False


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    # the column, or the comma-separated columns, whose values name one record
    key: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def raw_table(self) -> str:
        return f"raw.{self.name}"


FILE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}

# What a catalogue row sells (products.product_type). Only merchandise is a customer product: lines
# of the others are kept as order lines of their own type, never published as products, never
# counted as purchases (dbt macro product_types() lists the same values).
PRODUCT_TYPES = ("merchandise", "shipping", "fee", "voucher", "adjustment", "test", "service")

# Lineage columns the loader adds to every raw table.
LINEAGE_COLUMNS = ("_source_file", "_source_row")

SOURCES: tuple[Source, ...] = (
    Source(
        "customers",
        "CRM profiles with demographics. One row per profile; the same person may hold several.",
        "customer_id",
        (
            Column("customer_id", "CRM profile id, also the web/app login id", True),
            Column("first_name", "given name, any case"),
            Column("last_name", "family name, any case"),
            Column("email", "email address, any case or padding"),
            Column("phone", "phone number in any national or international format"),
            Column("birth_date", "YYYY-MM-DD"),
            Column("gender", "F, M, or other/unknown"),
            Column("address", "street address"),
            Column("city", "city"),
            Column("postcode", "postal code"),
            Column("country", "ISO 3166 alpha-2, alpha-3 or English name"),
            Column("loyalty_card", "store loyalty card number"),
            Column("signup_at", "ISO 8601 timestamp; a missing zone is read as UTC"),
            Column("updated_at", "ISO 8601 timestamp of the last profile change"),
        ),
    ),
    Source(
        "products",
        "Product catalogue.",
        "product_id",
        (
            Column("product_id", "product id (SKU)", True),
            Column("name", "product name"),
            Column("category", "category"),
            Column("brand", "brand"),
            Column("price", "list price, decimal point"),
            Column("currency", "ISO 4217 code of price"),
            Column("is_active", "true/false: still sold"),
            Column(
                "product_type",
                "merchandise (the default when absent), or a line that is not a customer sale: "
                + ", ".join(t for t in PRODUCT_TYPES if t != "merchandise"),
            ),
            Column("created_at", "ISO 8601 timestamp"),
        ),
    ),
    Source(
        "orders",
        "Web and app orders, one row per order.",
        "order_id",
        (
            Column("order_id", "order id", True),
            Column("customer_id", "CRM profile id of the logged-in buyer", True),
            Column("channel", "web or app"),
            Column("status", "completed, cancelled or returned"),
            Column("currency", "ISO 4217 code"),
            Column("ordered_at", "ISO 8601 timestamp with zone", True),
        ),
    ),
    Source(
        "order_items",
        "Lines of web and app orders.",
        "order_item_id",
        (
            Column("order_item_id", "line id", True),
            Column("order_id", "order id", True),
            Column("product_id", "product id", True),
            Column("quantity", "integer units"),
            Column("unit_price", "price per unit in the order's currency"),
        ),
    ),
    Source(
        "pos_transactions",
        "Store receipts, one row per receipt line. The buyer is identified by loyalty card, email, phone, or nothing.",
        "transaction_line_id",
        (
            Column("transaction_line_id", "receipt line id", True),
            Column("receipt_id", "receipt id", True),
            Column("store_id", "store id"),
            Column("loyalty_card", "loyalty card number, if shown"),
            Column("email", "email given at the till, if any"),
            Column("phone", "phone given at the till, if any"),
            Column("product_id", "product id", True),
            Column("quantity", "integer units"),
            Column("unit_price", "price per unit"),
            Column("currency", "ISO 4217 code"),
            Column("transacted_at", "ISO 8601 timestamp", True),
        ),
    ),
    Source(
        "events",
        "Clickstream: one row per event. Anonymous cookies carry a customer id once logged in.",
        "event_id",
        (
            Column("event_id", "event id", True),
            Column(
                "event_type",
                "page_view, product_view, search, add_to_cart, remove_from_cart, checkout, purchase",
                True,
            ),
            Column("event_ts", "ISO 8601 timestamp with zone", True),
            Column("anonymous_id", "first-party cookie id", True),
            Column("customer_id", "CRM profile id once the visitor logged in"),
            Column("session_id", "session id", True),
            Column("product_id", "product id for product events"),
            Column("device", "desktop, mobile or tablet"),
            Column("referrer", "referrer channel"),
            Column("country", "country code from geo-IP"),
        ),
    ),
    Source(
        "email_events",
        "Email engagement: sent, open, click, bounce, unsubscribe.",
        "email_event_id",
        (
            Column("email_event_id", "event id", True),
            Column("campaign_id", "campaign id"),
            Column("email", "recipient address", True),
            Column("event_type", "sent, open, click, bounce or unsubscribe", True),
            Column("event_ts", "ISO 8601 timestamp", True),
        ),
    ),
    Source(
        "privacy",
        "Consent changes and erasure requests.",
        "request_id",
        (
            Column("request_id", "request id", True),
            Column("customer_id", "CRM profile id, if known"),
            Column("email", "email address, if known"),
            Column("request_type", "consent or erasure", True),
            Column("channel", "email, sms, web or all"),
            Column("purpose", "marketing, personalization or analytics"),
            Column("granted", "true/false for consent requests"),
            Column("requested_at", "ISO 8601 timestamp", True),
        ),
    ),
    Source(
        "identifiers",
        "More person identifiers of CRM profiles, one row per profile and identifier: a marketplace's "
        "person id that groups its per-order customer ids, a login id, a CRM's external id. Profiles "
        "that share a type and value are linked as one person. Optional: a shop without any sends no folder.",
        # a repeated row is the same fact delivered again, not a conflicting record
        "customer_id, id_type, id_value",
        (
            Column("customer_id", "CRM profile id the identifier belongs to", True),
            Column("id_type", "the identifier's name, chosen by the shop (person_id, login_id, ...)", True),
            Column("id_value", "the identifier, compared exactly after trimming", True),
            Column("observed_at", "ISO 8601 timestamp: when the shop saw the pair, if known"),
        ),
    ),
)

SOURCES_BY_NAME = {s.name: s for s in SOURCES}
EVENT_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
)
