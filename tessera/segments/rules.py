"""Rule-based segments: validate the marketer's YAML file and compile it to a dbt model.

The compiled model (`customer_rule_segments`) is plain dbt SQL using dbt's cross-database macros;
it is generated, committed, and checked for drift by the tests, so a fresh clone parses without
running anything. `tessera segments compile` (called by `make`) regenerates it.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

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
NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class SegmentRuleError(ValueError):
    """An invalid rule file; the message names the rule and the field."""


def _fail(rule: str, field: str, problem: str) -> None:
    raise SegmentRuleError(f"segment rule '{rule}': field '{field}': {problem}")


def _positive_int(rule: str, field: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        _fail(rule, field, f"must be a positive whole number, got {value!r}")
    return value


def _feature_test(rule: str, where: str, spec: dict) -> dict:
    extra = set(spec) - {"feature", "op", "value"}
    if extra:
        _fail(rule, f"{where}.{sorted(extra)[0]}", "unknown field; a feature test has feature, op and value")
    if spec.get("feature") not in FEATURES:
        _fail(rule, f"{where}.feature", f"unknown feature {spec.get('feature')!r}; known: {sorted(FEATURES)}")
    if spec.get("op") not in OPS:
        _fail(rule, f"{where}.op", f"must be one of {list(OPS)}, got {spec.get('op')!r}")
    value = spec.get("value")
    if not isinstance(value, (int, float, str)) or isinstance(value, bool):
        _fail(rule, f"{where}.value", f"must be a number or a text, got {value!r}")
    return {"feature": spec["feature"], "op": spec["op"], "value": value}


def validate_rules(data: dict) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("segments"), list) or not data["segments"]:
        raise SegmentRuleError("the rule file must have a non-empty list under 'segments'")
    rules, seen = [], set()
    for i, raw in enumerate(data["segments"]):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = name if isinstance(name, str) else f"#{i + 1}"
        if not isinstance(raw, dict):
            _fail(label, "(rule)", "each segment must be a mapping")
        unknown = set(raw) - {"name", "description", "priority", "exclusive", "trigger", "conditions"}
        if unknown:
            _fail(label, sorted(unknown)[0], "unknown field")
        if not isinstance(name, str) or not NAME.match(name):
            _fail(label, "name", "must be lower_snake_case, starting with a letter, at most 48 characters")
        if name in seen:
            _fail(name, "name", "is used twice")
        seen.add(name)
        if not isinstance(raw.get("description"), str) or not raw["description"].strip():
            _fail(name, "description", "is required")
        priority = raw.get("priority")
        if not isinstance(priority, int) or isinstance(priority, bool):
            _fail(name, "priority", f"must be a whole number, got {priority!r}")
        if not isinstance(raw.get("exclusive"), bool):
            _fail(name, "exclusive", f"must be true or false, got {raw.get('exclusive')!r}")
        trigger = raw.get("trigger")
        if not isinstance(trigger, dict):
            _fail(name, "trigger", "is required: event, rfm_segment or feature")
        kinds = [k for k in ("event", "rfm_segment", "feature") if k in trigger]
        if len(kinds) != 1:
            _fail(name, "trigger", f"needs exactly one of event, rfm_segment, feature; got {kinds or 'none'}")
        if kinds == ["event"]:
            extra = set(trigger) - {"event", "within_days", "min_count", "per"}
            if extra:
                _fail(name, f"trigger.{sorted(extra)[0]}", "unknown field for an event trigger")
            if trigger["event"] not in EVENT_TYPES:
                _fail(name, "trigger.event", f"must be one of {list(EVENT_TYPES)}, got {trigger['event']!r}")
            trig = {
                "kind": "event",
                "event": trigger["event"],
                "within_days": _positive_int(name, "trigger.within_days", trigger.get("within_days")),
                "min_count": _positive_int(name, "trigger.min_count", trigger.get("min_count", 1)),
                "per": trigger.get("per"),
            }
            if trig["per"] not in (None, "category"):
                _fail(name, "trigger.per", f"only 'category' is supported, got {trig['per']!r}")
        elif kinds == ["rfm_segment"]:
            segments = trigger["rfm_segment"]
            if set(trigger) != {"rfm_segment"}:
                _fail(
                    name,
                    f"trigger.{sorted(set(trigger) - {'rfm_segment'})[0]}",
                    "unknown field for an rfm_segment trigger",
                )
            if not isinstance(segments, list) or not segments or not set(segments) <= set(RFM_SEGMENTS):
                _fail(name, "trigger.rfm_segment", f"must be a list of RFM segment names from {list(RFM_SEGMENTS)}")
            trig = {"kind": "rfm_segment", "segments": list(segments)}
        else:
            trig = {"kind": "feature", **_feature_test(name, "trigger", trigger)}
        conditions = []
        for j, cond in enumerate(raw.get("conditions") or []):
            where = f"conditions[{j}]"
            if not isinstance(cond, dict):
                _fail(name, where, "each condition must be a mapping")
            if "no_event" in cond:
                if trig["kind"] != "event":
                    _fail(name, f"{where}.no_event", "needs an event trigger to count hours from")
                if set(cond) - {"no_event", "within_hours"}:
                    _fail(name, f"{where}.{sorted(set(cond) - {'no_event', 'within_hours'})[0]}", "unknown field")
                if cond["no_event"] not in EVENT_TYPES:
                    _fail(name, f"{where}.no_event", f"must be one of {list(EVENT_TYPES)}, got {cond['no_event']!r}")
                hours = _positive_int(name, f"{where}.within_hours", cond.get("within_hours"))
                conditions.append({"kind": "no_event", "event": cond["no_event"], "within_hours": hours})
            elif "no_purchase_in" in cond:
                if cond["no_purchase_in"] != "category" or trig.get("per") != "category":
                    _fail(name, f"{where}.no_purchase_in", "only 'category', with a trigger counted per category")
                conditions.append({"kind": "no_purchase_in_category"})
            elif "feature" in cond:
                conditions.append({"kind": "feature", **_feature_test(name, where, cond)})
            else:
                _fail(name, where, "must be one of no_event, no_purchase_in, feature")
        rules.append(
            {"name": name, "description": raw["description"].strip(), "priority": priority,
             "exclusive": raw["exclusive"], "trigger": trig, "conditions": conditions}
        )  # fmt: skip
    return rules


def load_rules(path: Path = RULES_FILE) -> list[dict]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise SegmentRuleError(f"{path}: not valid YAML: {exc}") from exc
    return validate_rules(data)


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
                f"            and x.event_at >= e.event_at and x.event_at < {{{{ dbt.dateadd('hour', {c['within_hours']}, 'e.event_at') }}}}",
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
