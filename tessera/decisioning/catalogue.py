"""The action catalogue: what a marketer can send, to whom, how often, in which variants.

`config/actions.yml` (TESSERA_ACTIONS_FILE overrides it) is validated here into frozen
dataclasses; every problem raises CatalogueError naming the action and the field. Templates are
validated at the same time (tessera/decisioning/templates.py), so a template that reads a variable
no customer record provides fails when the catalogue is loaded, never at send time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import PlainValidator, ValidationInfo, field_validator, model_validator

from tessera.config_files import (
    ConfigModel,
    FieldProblem,
    Name,
    Text,
    checked,
    entry_problem,
    one_of,
    read_yaml,
    unique,
    validate,
    whole,
)
from tessera.decisioning.templates import (
    Line,
    Template,
    TemplateError,
    check_unsubscribe,
    load_line,
    load_template,
)
from tessera.segments.rules import (
    FEATURES,
    EventType,
    FeatureTest,
    Op,
    RfmSegmentTrigger,
    Term,
    load_rules,
)
from tessera.settings import ACTIONS_FILE as DEFAULT_FILE
from tessera.settings import load_settings

# channel -> the consent (marts.customer_consents channel, purpose) a message on it needs
CHANNELS = {"email": ("email", "marketing"), "push": ("push", "marketing"), "web_banner": ("web", "personalization")}
# the same mapping as a relation (channel, consent_channel, consent_purpose), for SQL joins
CHANNEL_CONSENT_SQL = " union all ".join(
    f"select '{ch}' as channel, '{c}' as consent_channel, '{p}' as consent_purpose" for ch, (c, p) in CHANNELS.items()
)
SCORES = ("purchase_propensity_30d", "churn_risk_30d")  # ml.propensity_scores columns


class CatalogueError(ValueError):
    """An invalid action catalogue; the message names the file, the action, the field and the value."""


# --- the file, as pydantic models (the rule language of tessera/segments/rules.py, plus its own) --


class SegmentTrigger(Term):
    """segment: <rule segment of config/segment_rules.yml>"""

    KIND = "segment"
    segment: str

    @field_validator("segment")
    @classmethod
    def _is_a_rule_segment(cls, segment: str, info: ValidationInfo) -> str:
        known = info.context["rule_segments"]
        if segment not in known:
            raise ValueError(f"no rule segment {segment!r}; known: {sorted(known)}")
        return segment


class ActionEventTrigger(Term):
    """event: <event type>, within_hours: H [, not_followed_by: <event type>]"""

    KIND = "event"
    event: EventType
    within_hours: whole(1, 24 * 90)
    not_followed_by: EventType | None = None


def _score(value) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"a score lies in [0, 1]; got {value!r}")
    return value


# what a realtime trigger watches, and the whole numbers it accepts (tessera/realtime/triggers.py)
REALTIME_SIGNALS = {
    "idle_minutes": (1, 7 * 24 * 60),  # cart untouched this long, no checkout or purchase since
    "dwell_seconds": (1, 3600),  # one product viewed at least this long
    "visits_without_purchase": (1, 1000),  # this many visits since the last purchase (or ever, never bought)
}


class RealtimeSignal(ConfigModel):
    """The body of `realtime:`, exactly one of REALTIME_SIGNALS."""

    idle_minutes: whole(*REALTIME_SIGNALS["idle_minutes"]) | None = None
    dwell_seconds: whole(*REALTIME_SIGNALS["dwell_seconds"]) | None = None
    visits_without_purchase: whole(*REALTIME_SIGNALS["visits_without_purchase"]) | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RealtimeSignal:
        given = [name for name in REALTIME_SIGNALS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"must hold exactly one of {', '.join(REALTIME_SIGNALS)}, got {', '.join(given) if given else 'none'}"
            )
        return self


class RealtimeTrigger(Term):
    """realtime: {idle_minutes: N} | {dwell_seconds: N} | {visits_without_purchase: N}

    Decided event by event by the trigger worker (tessera/realtime/triggers.py), never by the
    batch SQL of tessera/decisioning/decide.py."""

    KIND = "realtime"
    realtime: RealtimeSignal

    def spec(self) -> dict:
        signal = next(name for name in REALTIME_SIGNALS if getattr(self.realtime, name) is not None)
        return {"kind": self.KIND, "signal": signal, "threshold": getattr(self.realtime, signal)}


class ScoreTest(Term):
    """score: <ml.propensity_scores column>, op: <op>, value: 0..1"""

    KIND = "score"
    score: Literal[SCORES]
    op: Op
    value: Annotated[int | float, PlainValidator(_score)]


class CartTest(Term):
    """cart: not_empty"""

    KIND = "cart"
    cart: Literal["not_empty"]

    def spec(self) -> dict:
        return {"kind": self.KIND}


class VariantSpec(ConfigModel):
    id: Name
    template: Annotated[
        str, checked(lambda name: "/" not in name and "\\" not in name, "must be a file name in templates/")
    ]
    subject: str | None = None  # email subject / push title


class OfferSpec(ConfigModel):
    code: Annotated[
        str, checked(lambda c: re.fullmatch(r"[A-Z0-9_-]{2,32}", c), "must be 2-32 capital letters, digits, - or _")
    ]
    description: Text
    discount_percent: Annotated[float, checked(lambda p: 0 < p <= 90, "must be a number in (0, 90]")]


class ActionSpec(ConfigModel):
    id: Name
    description: Text
    explicit: bool = False
    trigger: one_of(
        SegmentTrigger,
        RfmSegmentTrigger,
        ActionEventTrigger,
        FeatureTest,
        RealtimeTrigger,
        keys=("segment", "rfm_segment", "event", "feature", "realtime"),
    )
    conditions: list[one_of(FeatureTest, ScoreTest, CartTest, keys=("feature", "score", "cart"))] | None = None
    channel: Literal[tuple(CHANNELS)]
    priority: whole(1, 100)
    frequency_cap_per_week: whole(1, 50)
    # actions of one cap group share their frequency count: a send of any of them counts against
    # each one's cap (a realtime cart reminder and the daily one: at most one reminder a week)
    cap_group: Name | None = None
    propensity: Literal[SCORES] = "purchase_propensity_30d"
    variants: Annotated[list[VariantSpec], checked(len, "needs at least one content variant"), unique("id")]
    offer: OfferSpec | None = None

    @model_validator(mode="after")
    def _realtime_has_no_batch_conditions(self) -> ActionSpec:
        if isinstance(self.trigger, RealtimeTrigger) and self.conditions:
            raise FieldProblem(
                ("conditions",),
                "a realtime trigger takes no conditions (they are warehouse tests the trigger worker cannot "
                f"evaluate per event), got {len(self.conditions)}",
            )
        return self

    @model_validator(mode="after")
    def _variants_fit_the_channel(self) -> ActionSpec:
        wanted = ".html.j2" if self.channel == "email" else ".json.j2"
        for i, v in enumerate(self.variants):
            if not v.template.endswith(wanted):
                raise FieldProblem(
                    ("variants", i, "template"), f"a {self.channel} template is a {wanted} file, got {v.template!r}"
                )
            if self.channel == "web_banner" and v.subject is not None:
                raise FieldProblem(("variants", i, "subject"), "a web banner has no subject")
            if self.channel != "web_banner" and not (v.subject or "").strip():
                raise FieldProblem(("variants", i, "subject"), f"is required on the {self.channel} channel")
        return self


Weight = Annotated[float, checked(lambda w: w >= 0, "must be a number >= 0")]


class Scoring(ConfigModel):
    """score = priority x priority/100 + propensity x <propensity> + recommendation x <affinity>"""

    priority: Weight
    propensity: Weight
    recommendation: Weight

    @model_validator(mode="after")
    def _weights_sum_to_one(self) -> Scoring:
        total = self.priority + self.propensity + self.recommendation
        if abs(total - 1) > 1e-9:
            raise ValueError(f"weights must sum to 1, they sum to {total}")
        return self


class Attribution(ConfigModel):
    purchase_window_days: whole(1, 90)


class CatalogueFile(ConfigModel):
    version: int = 1
    scoring: Scoring = Scoring(priority=0.3, propensity=0.4, recommendation=0.3)
    attribution: Attribution = Attribution(purchase_window_days=7)
    actions: Annotated[list[ActionSpec], checked(len, "needs at least one action"), unique("id")]

    @field_validator("scoring", "attribution", mode="before")
    @classmethod
    def _default_when_empty(cls, value, info: ValidationInfo):
        return value if value else cls.model_fields[info.field_name].default

    @model_validator(mode="after")
    def _some_action_is_decided_daily(self) -> CatalogueFile:
        # the daily decisions (and the published next_best_actions) need at least one action to decide
        if all(isinstance(a.trigger, RealtimeTrigger) for a in self.actions):
            raise FieldProblem(("actions",), "needs at least one action that is not a realtime trigger")
        return self


# --- what decisioning reads: actions with their templates compiled -------------------------------


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
    cap_group: str | None = None

    @property
    def consent(self) -> tuple[str, str]:
        return CHANNELS[self.channel]

    @property
    def realtime(self) -> bool:
        """Decided by the trigger worker per event (tessera/realtime/triggers.py), not by the batch SQL."""
        return self.trigger["kind"] == RealtimeTrigger.KIND

    @property
    def cap_key(self) -> str:
        """What its frequency cap counts: the sends of its cap group, or its own."""
        return self.cap_group or self.id

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

    @property
    def batch_actions(self) -> tuple[Action, ...]:
        """The actions the daily decisions decide (tessera/decisioning/decide.py)."""
        return tuple(a for a in self.actions if not a.realtime)

    @property
    def realtime_actions(self) -> tuple[Action, ...]:
        """The actions the trigger worker decides, event by event (tessera/realtime/triggers.py)."""
        return tuple(a for a in self.actions if a.realtime)

    def cap_keys(self) -> dict[str, str]:
        """action id -> what its frequency cap counts (Action.cap_key)."""
        return {a.id: a.cap_key for a in self.actions}


def _variant(action: ActionSpec, i: int, provided: set[str], templates_dir: Path, path: Path) -> Variant:
    spec = action.variants[i]
    field = "template"
    try:
        template = load_template(templates_dir / spec.template, provided)
        if action.channel == "email":
            check_unsubscribe(template, action.offer.model_dump() if action.offer else None)
        field = "subject"
        subject = load_line(spec.subject, "subject", provided) if spec.subject is not None else None
    except TemplateError as e:
        raise CatalogueError(entry_problem(path, "action", action.id, f"variants[{i}].{field}", str(e))) from e
    return Variant(spec.id, template, subject)


def _action(spec: ActionSpec, templates_dir: Path, path: Path) -> Action:
    offer = Offer(spec.offer.code, spec.offer.description, float(spec.offer.discount_percent)) if spec.offer else None
    # cart_items is empty for a customer with nothing left in the cart; offer only exists on actions with one
    # shop (sender, name, address) everywhere; the unsubscribe link on email (tessera/decisioning/mailing.py)
    provided = {"customer", "recommendations", "cart_items", "action", "variant", "shop"}
    provided |= ({"offer"} if offer else set()) | ({"unsubscribe"} if spec.channel == "email" else set())
    variants = tuple(_variant(spec, i, provided, templates_dir, path) for i in range(len(spec.variants)))
    return Action(
        spec.id, spec.description, spec.explicit, spec.trigger.spec(), tuple(c.spec() for c in spec.conditions or []),
        spec.channel, spec.priority, spec.frequency_cap_per_week, spec.propensity, variants, offer, spec.cap_group,
    )  # fmt: skip


def validate_catalogue(data, templates_dir: Path, rule_segments: set[str], path: Path = DEFAULT_FILE) -> Catalogue:
    """The catalogue in `data`, every template it names (in templates_dir) validated and compiled."""
    spec = validate(
        CatalogueFile, data, path, CatalogueError, ("actions", "id", "action"), {"rule_segments": rule_segments}
    )
    actions = tuple(_action(a, templates_dir, path) for a in spec.actions)
    return Catalogue(actions, spec.scoring.model_dump(), spec.attribution.purchase_window_days, path)


def catalogue_path() -> Path:
    return load_settings().actions_file


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Read and validate the catalogue and every template it names (templates/ beside it)."""
    path = Path(path) if path is not None else catalogue_path()
    if not path.is_file():
        raise CatalogueError(f"{path}: no action catalogue there (TESSERA_ACTIONS_FILE)")
    data = read_yaml(path, CatalogueError)
    rule_segments = {r["name"] for r in load_rules()}
    return validate_catalogue(data, path.parent / "templates", rule_segments, path)


__all__ = ["FEATURES", "Action", "Catalogue", "CatalogueError", "load_catalogue", "validate_catalogue"]
