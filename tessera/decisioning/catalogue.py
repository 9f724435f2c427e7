"""The action catalogue: what a marketer can send, to whom, how often, in which variants.

`config/actions.yml` (TESSERA_ACTIONS_FILE overrides it) is validated here into frozen
dataclasses; every problem raises CatalogueError naming the action and the field. Templates are
validated at the same time (tessera/decisioning/templates.py), so a template that reads a variable
no customer record provides fails when the catalogue is loaded, never at send time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tessera.landing.contract import EVENT_TYPES
from tessera.decisioning.templates import (
    Line,
    Template,
    TemplateError,
    load_line,
    load_template,
)
from tessera.segments.rules import (
    FEATURES,
    OPS,
    RFM_SEGMENTS,
    SegmentRuleError,
    _feature_test,
    load_rules,
)
from tessera.settings import ACTIONS_FILE as DEFAULT_FILE, load_settings

NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
# channel -> the consent (marts.customer_consents channel, purpose) a message on it needs
CHANNELS = {"email": ("email", "marketing"), "push": ("push", "marketing"), "web_banner": ("web", "personalization")}
# the same mapping as a relation (channel, consent_channel, consent_purpose), for SQL joins
CHANNEL_CONSENT_SQL = " union all ".join(
    f"select '{ch}' as channel, '{c}' as consent_channel, '{p}' as consent_purpose" for ch, (c, p) in CHANNELS.items()
)
SCORES = ("purchase_propensity_30d", "churn_risk_30d")  # ml.propensity_scores columns
SIGNALS = ("priority", "propensity", "recommendation")
ACTION_FIELDS = {
    "id", "description", "explicit", "trigger", "conditions", "channel", "priority",
    "frequency_cap_per_week", "propensity", "variants", "offer",
}  # fmt: skip


class CatalogueError(ValueError):
    """An invalid action catalogue; the message names the action and the field."""


def _fail(action: str, field: str, problem: str):
    raise CatalogueError(f"action '{action}': field '{field}': {problem}")


@dataclass(frozen=True)
class Variant:
    id: str
    template: Template
    subject: Line | None  # email subject / push title


@dataclass(frozen=True)
class Offer:
    code: str
    description: str
    discount_percent: float


@dataclass(frozen=True)
class Action:
    id: str
    description: str
    explicit: bool  # a high-confidence rule: when it applies it wins over every scored action
    trigger: dict
    conditions: tuple[dict, ...]
    channel: str
    priority: int  # 1..100
    frequency_cap_per_week: int
    propensity: str  # the ml.propensity_scores column its weighted score reads
    variants: tuple[Variant, ...]
    offer: Offer | None

    @property
    def consent(self) -> tuple[str, str]:
        return CHANNELS[self.channel]

    def uses(self) -> frozenset[str]:
        """The context names any of its templates read."""
        out: set[str] = set()
        for v in self.variants:
            out |= v.template.uses | (v.subject.uses if v.subject else set())
        return frozenset(out)


@dataclass(frozen=True)
class Catalogue:
    actions: tuple[Action, ...]
    weights: dict[str, float]  # signal -> weight of the blended score, summing to 1
    attribution_days: int  # a purchase this many days after a message counts as its conversion
    path: Path

    def action(self, action_id: str) -> Action:
        return next(a for a in self.actions if a.id == action_id)


def _int(action: str, field: str, value, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        _fail(action, field, f"must be a whole number from {low} to {high}, got {value!r}")
    return value


def _test(action: str, where: str, spec) -> dict:
    if not isinstance(spec, dict):
        _fail(action, where, "must be a mapping")
    if "cart" in spec:
        if spec != {"cart": "not_empty"}:
            _fail(action, where, "a cart test is exactly 'cart: not_empty'")
        return {"kind": "cart"}
    if isinstance(spec.get("value"), float) and not math.isfinite(spec["value"]):
        _fail(action, f"{where}.value", f"must be a finite number, got {spec['value']!r}")
    if "score" in spec:
        extra = set(spec) - {"score", "op", "value"}
        if extra:
            _fail(action, f"{where}.{min(extra)}", "unknown field; a score test has score, op and value")
        if spec["score"] not in SCORES:
            _fail(action, f"{where}.score", f"must be one of {list(SCORES)}, got {spec['score']!r}")
        if spec.get("op") not in OPS:
            _fail(action, f"{where}.op", f"must be one of {list(OPS)}, got {spec.get('op')!r}")
        value = spec.get("value")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            _fail(action, f"{where}.value", f"a score lies in [0, 1]; got {value!r}")
        return {"kind": "score", "score": spec["score"], "op": spec["op"], "value": value}
    if "feature" in spec:
        try:
            return {"kind": "feature", **_feature_test(action, where, spec)}
        except SegmentRuleError as e:
            raise CatalogueError(str(e).replace("segment rule", "action", 1)) from e
    _fail(action, where, "must be a feature test (feature, op, value), a score test (score, op, value) or 'cart: not_empty'")


def _trigger(action: str, raw, rule_segments: set[str]) -> dict:
    if isinstance(raw, dict) and isinstance(raw.get("value"), float) and not math.isfinite(raw["value"]):
        _fail(action, "trigger.value", f"must be a finite number, got {raw['value']!r}")
    if not isinstance(raw, dict):
        _fail(action, "trigger", "is required: segment, rfm_segment, event or feature")
    kinds = [k for k in ("segment", "rfm_segment", "event", "feature") if k in raw]
    if len(kinds) != 1:
        _fail(action, "trigger", f"needs exactly one of segment, rfm_segment, event, feature; got {kinds or 'none'}")
    kind = kinds[0]
    if kind == "segment":
        if set(raw) != {"segment"}:
            _fail(action, f"trigger.{min(set(raw) - {'segment'})}", "unknown field for a segment trigger")
        if raw["segment"] not in rule_segments:
            _fail(action, "trigger.segment", f"no rule segment {raw['segment']!r}; known: {sorted(rule_segments)}")
        return {"kind": "segment", "segment": raw["segment"]}
    if kind == "rfm_segment":
        if set(raw) != {"rfm_segment"}:
            _fail(action, f"trigger.{min(set(raw) - {'rfm_segment'})}", "unknown field for an rfm_segment trigger")
        segments = raw["rfm_segment"]
        if not isinstance(segments, list) or not segments or not set(segments) <= set(RFM_SEGMENTS):
            _fail(action, "trigger.rfm_segment", f"must be a list of RFM segment names from {list(RFM_SEGMENTS)}")
        return {"kind": "rfm_segment", "segments": tuple(segments)}
    if kind == "event":
        extra = set(raw) - {"event", "within_hours", "not_followed_by"}
        if extra:
            _fail(action, f"trigger.{min(extra)}", "unknown field for an event trigger")
        if raw["event"] not in EVENT_TYPES:
            _fail(action, "trigger.event", f"must be one of {list(EVENT_TYPES)}, got {raw['event']!r}")
        follow = raw.get("not_followed_by")
        if follow is not None and follow not in EVENT_TYPES:
            _fail(action, "trigger.not_followed_by", f"must be one of {list(EVENT_TYPES)}, got {follow!r}")
        hours = _int(action, "trigger.within_hours", raw.get("within_hours"), 1, 24 * 90)
        return {"kind": "event", "event": raw["event"], "within_hours": hours, "not_followed_by": follow}
    try:
        return {"kind": "feature", **_feature_test(action, "trigger", raw)}
    except SegmentRuleError as e:
        raise CatalogueError(str(e).replace("segment rule", "action", 1)) from e


def _offer(action: str, raw) -> Offer | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        _fail(action, "offer", "must be a mapping with code, description and discount_percent")
    extra = set(raw) - {"code", "description", "discount_percent"}
    if extra:
        _fail(action, f"offer.{min(extra)}", "unknown field")
    if not isinstance(raw.get("code"), str) or not re.fullmatch(r"[A-Z0-9_-]{2,32}", raw["code"]):
        _fail(action, "offer.code", f"must be 2-32 capital letters, digits, - or _; got {raw.get('code')!r}")
    if not isinstance(raw.get("description"), str) or not raw["description"].strip():
        _fail(action, "offer.description", "is required")
    pct = raw.get("discount_percent")
    if not isinstance(pct, (int, float)) or isinstance(pct, bool) or not 0 < pct <= 90:
        _fail(action, "offer.discount_percent", f"must be a number in (0, 90], got {pct!r}")
    return Offer(raw["code"], raw["description"].strip(), float(pct))


def _variants(action: str, raw, channel: str, provided: set[str], templates_dir: Path) -> tuple[Variant, ...]:
    if not isinstance(raw, list) or not raw:
        _fail(action, "variants", "needs at least one content variant")
    out, seen = [], set()
    for i, v in enumerate(raw):
        where = f"variants[{i}]"
        if not isinstance(v, dict):
            _fail(action, where, "must be a mapping with id, template and (email, push) subject")
        extra = set(v) - {"id", "template", "subject"}
        if extra:
            _fail(action, f"{where}.{min(extra)}", "unknown field")
        vid = v.get("id")
        if not isinstance(vid, str) or not NAME.match(vid):
            _fail(action, f"{where}.id", f"must be lower_snake_case, got {vid!r}")
        if vid in seen:
            _fail(action, f"{where}.id", f"variant {vid!r} is used twice")
        seen.add(vid)
        name = v.get("template")
        if not isinstance(name, str) or "/" in name or "\\" in name:
            _fail(action, f"{where}.template", f"must be a file name in {templates_dir}, got {name!r}")
        wanted = ".html.j2" if channel == "email" else ".json.j2"
        if not name.endswith(wanted):
            _fail(action, f"{where}.template", f"a {channel} template is a {wanted} file, got {name!r}")
        try:
            template = load_template(templates_dir / name, provided)
            subject = None
            if channel in ("email", "push"):
                if not isinstance(v.get("subject"), str) or not v["subject"].strip():
                    _fail(action, f"{where}.subject", f"is required on the {channel} channel")
                subject = load_line(v["subject"], "subject", provided)
            elif "subject" in v:
                _fail(action, f"{where}.subject", "a web banner has no subject")
        except TemplateError as e:
            _fail(action, f"{where}.{'subject' if str(e).startswith('subject') else 'template'}", str(e))
        out.append(Variant(vid, template, subject))
    return tuple(out)


def validate_catalogue(data, templates_dir: Path, rule_segments: set[str], path: Path = DEFAULT_FILE) -> Catalogue:
    if not isinstance(data, dict) or not isinstance(data.get("actions"), list) or not data["actions"]:
        raise CatalogueError(f"{path}: the catalogue must have a non-empty list under 'actions'")
    extra = set(data) - {"version", "scoring", "attribution", "actions"}
    if extra:
        raise CatalogueError(f"{path}: unknown top-level field '{min(extra)}'")
    scoring = data.get("scoring") or {"priority": 0.3, "propensity": 0.4, "recommendation": 0.3}
    if not isinstance(scoring, dict) or set(scoring) != set(SIGNALS):
        raise CatalogueError(f"{path}: 'scoring' must give a weight to each of {list(SIGNALS)}")
    if any(not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0 for w in scoring.values()):
        raise CatalogueError(f"{path}: 'scoring' weights must be numbers >= 0")
    if abs(sum(scoring.values()) - 1) > 1e-9:
        raise CatalogueError(f"{path}: 'scoring' weights must sum to 1, they sum to {sum(scoring.values())}")
    attribution = data.get("attribution") or {"purchase_window_days": 7}
    if not isinstance(attribution, dict) or set(attribution) != {"purchase_window_days"}:
        raise CatalogueError(f"{path}: 'attribution' has exactly one field, purchase_window_days")
    window = _int("(catalogue)", "attribution.purchase_window_days", attribution["purchase_window_days"], 1, 90)

    actions, seen = [], set()
    for i, raw in enumerate(data["actions"]):
        aid = raw.get("id") if isinstance(raw, dict) else None
        label = aid if isinstance(aid, str) else f"#{i + 1}"
        if not isinstance(raw, dict):
            _fail(label, "(action)", "each action must be a mapping")
        unknown = set(raw) - ACTION_FIELDS
        if unknown:
            _fail(label, min(unknown), f"unknown field; an action has {sorted(ACTION_FIELDS)}")
        if not isinstance(aid, str) or not NAME.match(aid):
            _fail(label, "id", "must be lower_snake_case, starting with a letter, at most 48 characters")
        if aid in seen:
            _fail(aid, "id", "is used twice")
        seen.add(aid)
        if not isinstance(raw.get("description"), str) or not raw["description"].strip():
            _fail(aid, "description", "is required")
        if not isinstance(raw.get("explicit", False), bool):
            _fail(aid, "explicit", f"must be true or false, got {raw.get('explicit')!r}")
        channel = raw.get("channel")
        if channel not in CHANNELS:
            _fail(aid, "channel", f"must be one of {list(CHANNELS)}, got {channel!r}")
        priority = _int(aid, "priority", raw.get("priority"), 1, 100)
        cap = _int(aid, "frequency_cap_per_week", raw.get("frequency_cap_per_week"), 1, 50)
        propensity = raw.get("propensity", "purchase_propensity_30d")
        if propensity not in SCORES:
            _fail(aid, "propensity", f"must be one of {list(SCORES)}, got {propensity!r}")
        trigger = _trigger(aid, raw.get("trigger"), rule_segments)
        conditions = raw.get("conditions") or []
        if not isinstance(conditions, list):
            _fail(aid, "conditions", "must be a list of feature or score tests")
        tests = tuple(_test(aid, f"conditions[{j}]", c) for j, c in enumerate(conditions))
        offer = _offer(aid, raw.get("offer"))
        # cart_items is empty for a customer with nothing left in the cart; offer only exists on actions with one
        provided = {"customer", "recommendations", "cart_items", "action", "variant"} | ({"offer"} if offer else set())
        variants = _variants(aid, raw.get("variants"), channel, provided, templates_dir)
        actions.append(
            Action(aid, raw["description"].strip(), raw.get("explicit", False), trigger, tests, channel, priority,
                   cap, propensity, variants, offer)
        )  # fmt: skip
    return Catalogue(tuple(actions), {k: float(v) for k, v in scoring.items()}, window, path)


def catalogue_path() -> Path:
    return load_settings().actions_file


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Read and validate the catalogue and every template it names (templates/ beside it)."""
    path = Path(path) if path is not None else catalogue_path()
    if not path.is_file():
        raise CatalogueError(f"{path}: no action catalogue there (TESSERA_ACTIONS_FILE)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path}: not valid YAML: {exc}") from exc
    rule_segments = {r["name"] for r in load_rules()}
    return validate_catalogue(data, path.parent / "templates", rule_segments, path)


__all__ = ["FEATURES", "Action", "Catalogue", "CatalogueError", "load_catalogue", "validate_catalogue"]
