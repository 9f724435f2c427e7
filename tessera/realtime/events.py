"""Segment-spec messages in, one normalised event out (or a clear error per event).

The collector accepts what a shop's Segment tracking already sends (the HTTP tracking API's
`/v1/batch` body: `{"batch": [message, ...], "sentAt": ...}`), so it can point there:

- `type`: `track`, `identify` or `page` (others are refused by name);
- `messageId` (required here: it is what makes a retried batch idempotent), `userId` and/or
  `anonymousId` (one is required), `timestamp` (ISO 8601 with zone; missing: the time received),
  `sentAt` (with it, the client's clock skew is corrected as Segment does:
  timestamp + (received_at - sentAt)), `event` (track), `properties`, `context`.

Ecommerce track events (Segment's V2 ecommerce spec) map to the landing contract's clickstream
types; other track events are accepted for the real-time side (triggers, session state) and do
not land in `events/` (docs/realtime.md):

    page                 -> page_view          Product Added    -> add_to_cart
    Product Viewed       -> product_view       Product Removed  -> remove_from_cart
    Products Searched    -> search             Checkout Started -> checkout
                                               Order Completed  -> purchase (one row per product)

`traits` (identify) and free-text properties are not kept: the stream holds ids, products and
times, never a person's attributes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_BATCH_EVENTS = 500  # as Segment's batch endpoint
MAX_ID_LENGTH = 128
# a timestamp this far ahead of the server's clock after the skew correction is refused
MAX_FUTURE_SECONDS = 300

TRACK_TYPES = {
    "Product Viewed": "product_view",
    "Products Searched": "search",
    "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart",
    "Checkout Started": "checkout",
    "Order Completed": "purchase",
}
PRODUCT_EVENTS = {"product_view", "add_to_cart", "remove_from_cart"}
DEVICES = {"desktop", "mobile", "tablet"}


def parse_time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 timestamp, got {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone (e.g. 2026-12-07T10:00:00Z), got {value!r}")
    return parsed.astimezone(UTC)


def _id(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    return value


class Message(BaseModel):
    """One Segment message as received; field names as in the spec (camelCase)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: str
    message_id: str | None = Field(None, alias="messageId")
    user_id: str | None = Field(None, alias="userId")
    anonymous_id: str | None = Field(None, alias="anonymousId")
    timestamp: str | None = None
    sent_at: str | None = Field(None, alias="sentAt")
    event: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("message_id", "user_id", "anonymous_id", mode="before")
    @classmethod
    def _ids(cls, value: Any, info) -> str | None:
        return _id(
            value, {"message_id": "messageId", "user_id": "userId", "anonymous_id": "anonymousId"}[info.field_name]
        )

    @field_validator("properties", "context", mode="before")
    @classmethod
    def _objects(cls, value: Any, info) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"{info.field_name} must be an object, got {type(value).__name__}")
        return value

    @model_validator(mode="after")
    def _required(self) -> Message:
        if self.type not in {"track", "identify", "page"}:
            raise ValueError(f"type must be track, identify or page, got {self.type!r}")
        if self.message_id is None:
            raise ValueError("messageId is required (it makes a retried batch idempotent)")
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("userId or anonymousId is required")
        if self.type == "track" and not (self.event or "").strip():
            raise ValueError("event (the track event's name) is required")
        return self


def _text(properties: dict, key: str) -> str | None:
    value = properties.get(key)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()[:MAX_ID_LENGTH]
    return None


def _number(properties: dict, key: str, name: str) -> float | None:
    value = properties.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"properties.{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"properties.{key} must be a number, got {value!r}") from None
    if number != number or number < 0:
        raise ValueError(f"properties.{key} must be a non-negative number, got {value!r}")
    return number


def _product(properties: dict, where: str) -> dict:
    product_id = _text(properties, "product_id") or _text(properties, "sku")
    if product_id is None:
        raise ValueError(f"{where}product_id is required for this event")
    quantity = _number(properties, "quantity", "quantity")
    return {
        "product_id": product_id,
        "category": _text(properties, "category"),
        "price": _number(properties, "price", "price"),
        "quantity": int(quantity) if quantity is not None else None,
    }


def normalise(raw: Any, received_at: datetime) -> dict:
    """One message to the stream's event, or ValueError naming the field and value."""
    if not isinstance(raw, dict):
        raise ValueError(f"a message must be a JSON object, got {type(raw).__name__}")
    try:
        message = Message.model_validate(raw)
    except ValidationError as exc:
        raise ValueError("; ".join(_describe(e) for e in exc.errors())) from None
    ts = parse_time(message.timestamp, "timestamp") if message.timestamp else received_at
    if message.timestamp and message.sent_at:
        ts = ts + (received_at - parse_time(message.sent_at, "sentAt"))
    if (ts - received_at).total_seconds() > MAX_FUTURE_SECONDS:
        raise ValueError(f"timestamp {message.timestamp!r} is in the future")
    context = message.context
    event_name = message.event.strip() if message.event else None
    event_type = "page_view" if message.type == "page" else TRACK_TYPES.get(event_name or "")
    products: list[dict] = []
    if event_type in PRODUCT_EVENTS:
        products = [_product(message.properties, "properties.")]
    elif event_type == "purchase":
        items = message.properties.get("products") or []
        if not isinstance(items, list) or not all(isinstance(p, dict) for p in items):
            raise ValueError("properties.products must be a list of product objects")
        products = [_product(p, f"properties.products[{i}].") for i, p in enumerate(items)]
    elif event_type is None and _text(message.properties, "product_id"):  # e.g. a custom "Product Dwell"
        products = [_product(message.properties, "properties.")]
    device = _text(context.get("device") or {}, "type") if isinstance(context.get("device"), dict) else None
    consent = context.get("consent") if isinstance(context.get("consent"), dict) else {}
    preferences = consent.get("categoryPreferences")
    return {
        "message_id": message.message_id,
        "type": message.type,
        "event": event_name if message.type == "track" else None,
        "event_type": event_type,
        "user_id": message.user_id,
        "anonymous_id": message.anonymous_id,
        "ts": ts.isoformat().replace("+00:00", "Z"),
        "received_at": received_at.isoformat().replace("+00:00", "Z"),
        "session_id": _text(context, "sessionId") or _text(message.properties, "session_id"),
        "products": products,
        "order_id": _text(message.properties, "order_id"),
        "query": None,  # search terms are free text a person typed: not kept
        "device": device.lower() if device and device.lower() in DEVICES else None,
        "referrer": _text(context.get("campaign") or {}, "source")
        if isinstance(context.get("campaign"), dict)
        else None,
        "country": None,
        "page_path": _text(context.get("page") or {}, "path") if isinstance(context.get("page"), dict) else None,
        "consent": {str(k): bool(v) for k, v in preferences.items()} if isinstance(preferences, dict) else None,
        "dwell_seconds": _number(message.properties, "dwell_seconds", "dwell_seconds"),
    }


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "__root__")
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def received_now() -> datetime:
    return datetime.now(UTC)
