"""Rule-based segments: validate the marketer's YAML file and compile it to a dbt model.

The compiled model (`customer_rule_segments`) is plain dbt SQL using dbt's cross-database macros;
it is generated, committed, and checked for drift by the tests, so a fresh clone parses without
running anything. `tessera segments compile` (called by `make`) regenerates it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, model_validator

from tessera.config_files import (
    ConfigModel,
    FieldProblem,
    Name,
    Text,
    checked,
    one_of,
    read_yaml,
    unique,
    validate,
    whole,
)
from tessera.landing.contract import EVENT_TYPES
from tessera.settings import DBT_PROJECT_DIR, PROJECT_ROOT

RULES_FILE = PROJECT_ROOT / "config" / "segment_rules.yml"
MODEL_FILE = DBT_PROJECT_DIR / "models" / "marts" / "customer_rule_segments.sql"
OPS = (">=", ">", "<=", "<", "=", "!=")
RFM_SEGMENTS = (
    "Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention", "About to Sleep",
    "At Risk", "Can't Lose Them", "Hibernating", "Lost", "Prospect",
)  # fmt: skip
# customer_features columns a rule may test
FEATURES = {
    "recency_days", "frequency", "monetary", "average_order_value", "tenure_days", "orders_last_30d",
    "orders_last_90d", "web_order_share", "app_order_share", "pos_order_share", "sessions",
    "time_on_site_seconds", "product_views", "cart_adds", "mobile_event_share", "days_since_last_visit",
    "top_category_share", "categories_browsed", "emails_sent", "email_open_rate", "email_click_rate",
    "last_cart_status", "last_device", "top_category",
}  # fmt: skip


class SegmentRuleError(ValueError):
    """An invalid rule file; the message names the file, the rule, the field and the value."""


# --- the rule language: segment rules and the action catalogue (tessera/decisioning) share it ----

Op = Literal[OPS]
EventType = Literal[EVENT_TYPES]
PositiveInt = whole(1)


def _scalar(value: Any) -> int | float | str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"must be a number or a text, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return value


class Term(ConfigModel):
    """A trigger or a condition; compiled from its spec(), a dict with its kind."""

    KIND: ClassVar[str]

    def spec(self) -> dict:
        return {"kind": self.KIND, **self.model_dump()}


class FeatureTest(Term):
    """feature: <customer_features column>, op: <op>, value: V"""

    KIND = "feature"
    feature: Literal[tuple(sorted(FEATURES))]
    op: Op
    value: Annotated[int | float | str, PlainValidator(_scalar)]


class RfmSegmentTrigger(Term):
    """rfm_segment: [RFM segment names]"""

    KIND = "rfm_segment"
    segments: Annotated[
        list[str],
        Field(validation_alias="rfm_segment"),
        checked(
            lambda v: v and set(v) <= set(RFM_SEGMENTS),
            f"must be a list of RFM segment names from {list(RFM_SEGMENTS)}",
        ),
    ]


# --- segment rules ------------------------------------------------------------------------------


class EventTrigger(Term):
    """event: <event type>, within_days: N [, min_count: K] [, per: category]"""

    KIND = "event"
    event: EventType
    within_days: PositiveInt
    min_count: PositiveInt = 1
    per: Literal["category"] | None = None


class NoEvent(Term):
    """no_event: <event type>, within_hours: H (after the trigger event)"""

    KIND = "no_event"
    event: EventType = Field(validation_alias="no_event")
    within_hours: PositiveInt


class NoPurchaseInCategory(Term):
    """no_purchase_in: category (in the trigger's window)"""

    KIND = "no_purchase_in_category"
    no_purchase_in: Literal["category"] = Field(exclude=True)


class SegmentRule(ConfigModel):
    name: Name
    description: Text
    priority: int
    exclusive: bool
    trigger: one_of(EventTrigger, RfmSegmentTrigger, FeatureTest, keys=("event", "rfm_segment", "feature"))
    conditions: (
        list[one_of(NoEvent, NoPurchaseInCategory, FeatureTest, keys=("no_event", "no_purchase_in", "feature"))] | None
    ) = None

    @model_validator(mode="after")
    def _conditions_fit_the_trigger(self) -> SegmentRule:
        for j, condition in enumerate(self.conditions or []):
            if isinstance(condition, NoEvent) and not isinstance(self.trigger, EventTrigger):
                raise FieldProblem(("conditions", j, "no_event"), "needs an event trigger to count hours from")
            if isinstance(condition, NoPurchaseInCategory) and getattr(self.trigger, "per", None) != "category":
                raise FieldProblem(
                    ("conditions", j, "no_purchase_in"), "only 'category', with a trigger counted per category"
                )
        return self

    def spec(self) -> dict:
        return {
            "name": self.name, "description": self.description, "priority": self.priority, "exclusive": self.exclusive,
            "trigger": self.trigger.spec(), "conditions": [c.spec() for c in self.conditions or []],
        }  # fmt: skip


class RuleFile(ConfigModel):
    version: int = 1
    segments: Annotated[list[SegmentRule], checked(len, "needs at least one segment rule"), unique("name")]


def validate_rules(data: Any, path: Path = RULES_FILE) -> list[dict]:
    rules = validate(RuleFile, data, path, SegmentRuleError, ("segments", "name", "segment rule"))
    return [rule.spec() for rule in rules.segments]


def load_rules(path: Path = RULES_FILE) -> list[dict]:
    return validate_rules(read_yaml(path, SegmentRuleError), path)


def sql_literal(value) -> str:
    """A Python string or number as SQL literal text (quotes doubled); also used by decisioning."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _feature_sql(test: dict) -> str:
    return f"f.{test['feature']} {test['op']} {sql_literal(test['value'])}"


def _rule_sql(rule: dict) -> str:
    t = rule["trigger"]
    feature_tests = [c for c in rule["conditions"] if c["kind"] == "feature"]
    if t["kind"] == "event":
        no_events = [c for c in rule["conditions"] if c["kind"] == "no_event"]
        category = t["per"] == "category"
        lines = [
            "    select distinct e.customer_key",
            "    from events as e",
            "    cross join as_of as a",
        ]
        if category:
            lines.append("    inner join products as p on p.product_id = e.product_id")
        lines += [
            f"    where e.event_type = {sql_literal(t['event'])}",
            f"      and e.event_at >= {{{{ dbt.dateadd('day', {-t['within_days']}, 'a.as_of_date') }}}}",
            "      and e.event_at < a.as_of_date",
        ]
        for c in no_events:
            # the follow-up window must be over before the as-of date to call it "no purchase"
            lines += [
                f"      and {{{{ dbt.dateadd('hour', {c['within_hours']}, 'e.event_at') }}}} <= a.as_of_date",
                "      and not exists (",
                "          select 1 from events as x",
                f"          where x.customer_key = e.customer_key and x.event_type = {sql_literal(c['event'])}",
                "            and x.event_at >= e.event_at"
                f" and x.event_at < {{{{ dbt.dateadd('hour', {c['within_hours']}, 'e.event_at') }}}}",
                "      )",
            ]
        if category or t["min_count"] > 1:
            group = "e.customer_key, p.category" if category else "e.customer_key"
            lines.append(f"    group by {group}")
            lines.append(f"    having count(*) >= {t['min_count']}")
            if any(c["kind"] == "no_purchase_in_category" for c in rule["conditions"]):
                lines += [
                    "       and not exists (",
                    "          select 1 from purchases as b",
                    "          where b.customer_key = e.customer_key and b.category = p.category",
                    f"            and b.ordered_at >= {{{{ dbt.dateadd('day', {-t['within_days']}, 'max(a.as_of_date)') }}}}",
                    "            and b.ordered_at < max(a.as_of_date)",
                    "      )",
                ]
        body = "\n".join(lines)
    elif t["kind"] == "rfm_segment":
        body = (
            "    select r.customer_key from rfm as r\n"
            f"    where r.rfm_segment in ({', '.join(sql_literal(s) for s in t['segments'])})"
        )
    else:
        body = f"    select f.customer_key from features as f\n    where {_feature_sql(t)}"
    if feature_tests:
        tests = " and ".join(_feature_sql(c) for c in feature_tests)
        body = (
            f"    select m.customer_key from (\n{body}\n    ) as m\n"
            f"    inner join features as f on f.customer_key = m.customer_key\n    where {tests}"
        )
    return f"rule_{rule['name']} as (\n    -- {rule['description']}\n{body}\n)"


def compile_rules(rules: list[dict]) -> str:
    lookback = max((r["trigger"]["within_days"] for r in rules if r["trigger"]["kind"] == "event"), default=0)
    ctes = [
        "as_of as (\n    select cast({{ tessera.as_of_date() }} as timestamp) as as_of_date\n)",
        # only the days some rule looks back over, so a large clickstream is read once and small
        "events as (\n    select e.customer_key, e.event_type, e.event_at, e.product_id\n"
        "    from {{ ref('fct_events') }} as e\n    cross join as_of as a\n"
        "    where e.customer_key is not null\n"
        f"      and e.event_at >= {{{{ dbt.dateadd('day', {-lookback}, 'a.as_of_date') }}}}\n)",
        "products as (\n    select product_id, category from {{ ref('dim_products') }}\n)",
        "purchases as (\n    select i.customer_key, p.category, i.ordered_at\n"
        "    from {{ ref('fct_order_items') }} as i\n"
        "    inner join {{ ref('dim_products') }} as p on p.product_id = i.product_id\n"
        "    where i.customer_key is not null and i.status = 'completed' and i.line_type = 'sale'\n)",
        "rfm as (\n    select customer_key, rfm_segment from {{ ref('customer_rfm') }}\n)",
        "features as (\n    select * from {{ ref('customer_features') }}\n)",
    ]
    ctes += [_rule_sql(r) for r in rules]
    flags = [f"    c.customer_key in (select customer_key from rule_{r['name']}) as in_{r['name']}" for r in rules]
    exclusive = sorted((r for r in rules if r["exclusive"]), key=lambda r: (-r["priority"], r["name"]))
    winner = "\n".join(f"        when in_{r['name']} then {sql_literal(r['name'])}" for r in exclusive)
    winner_priority = "\n".join(f"        when in_{r['name']} then {r['priority']}" for r in exclusive)
    header = (
        "{#- GENERATED by `tessera segments compile` from config/segment_rules.yml.\n"
        "    Do not edit: change the rule file and run `make segments`. One row per customer: a flag\n"
        "    per rule (in_<name>) and rule_segment, the exclusive segment with the highest priority\n"
        "    (ties: the name that sorts first). -#}\n"
    )
    flag_sql = ",\n".join(flags)
    return (
        f"{header}with\n\n"
        + ",\n\n".join(ctes)
        + ",\n\nflags as (\n    select\n        c.customer_key,\n"
        + flag_sql.replace("\n    c.", "\n        c.").replace("    c.customer_key in", "        c.customer_key in", 1)
        + "\n    from {{ ref('dim_customers') }} as c\n)\n\n"
        + "select\n    flags.*,\n"
        + f"    case\n{winner}\n    end as rule_segment,\n"
        + f"    case\n{winner_priority}\n    end as rule_segment_priority,\n"
        + "    (select as_of_date from as_of) as as_of_date\nfrom flags\n"
    )


def write_model(rules_path: Path = RULES_FILE, model_path: Path = MODEL_FILE) -> Path:
    model_path.write_text(compile_rules(load_rules(rules_path)))
    return model_path


def check_model_current(rules_path: Path | None = None, model_path: Path | None = None) -> None:
    """Raise if the rule file is invalid or the committed model was not recompiled after an edit."""
    rules_path = rules_path or RULES_FILE
    model_path = model_path or MODEL_FILE
    expected = compile_rules(load_rules(rules_path))
    if not model_path.exists() or model_path.read_text() != expected:
        raise SegmentRuleError(
            f"{model_path.name} is out of date with {rules_path.name}: run `make segments` (tessera segments compile)"
        )
