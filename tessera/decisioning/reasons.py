"""Why an action was chosen, in words a marketer reads: one formatter, in Python and in SQL.

    cart_abandonment_email (explicit rule, priority 100: wins over scored actions) chosen because:
    in segment cart_abandoned_2h; high propensity to buy again (0.59), priority 1, medium
    recommendation affinity (0.31); score 0.846; RFM segment Loyal

The decisions write it per customer in SQL (decide.eligible_sql, with reason_sql), the campaign
report per action from the median customer (chosen_because); both read the same words and levels
below, and a test holds the two equal.
"""

from __future__ import annotations

from tessera.sql import Params

# what each propensity score measures, as a marketer says it
PROPENSITY_WORDS = {"purchase_propensity_30d": "propensity to buy again", "churn_risk_30d": "risk of lapsing"}
# a score in [0, 1] is "high" from 0.5, "medium" from 0.2, else "low"
LEVELS = ((0.5, "high"), (0.2, "medium"))
LOW = "low"


def level(value: float) -> str:
    return next((word for floor, word in LEVELS if value >= floor), LOW)


def _measure(words: str, value: float | None, missing: str) -> str:
    return missing if value is None else f"{level(value)} {words} ({value:.2f})"


def kind(action_id: str, explicit: bool, priority: int) -> str:
    how = f"explicit rule, priority {priority}: wins over scored actions" if explicit else "highest weighted score"
    return f"{action_id} ({how}) chosen because: "


def chosen_because(
    action_id: str,
    explicit: bool,
    priority: int,
    trigger: str,
    propensity_name: str,
    propensity: float | None,
    affinity: float | None,
    score: float,
    rfm_segment: str | None,
) -> str:
    """The reason, from one customer's (or the median customer's) values."""
    return (
        kind(action_id, explicit, priority)
        + f"{trigger}; "
        + _measure(PROPENSITY_WORDS[propensity_name], propensity, f"no {PROPENSITY_WORDS[propensity_name]} score")
        + f", priority {priority / 100:g}, "
        + _measure("recommendation affinity", affinity, "no personalised recommendations")
        + f"; score {score:.3f}; RFM segment {rfm_segment or 'none'}"
    )


def _level_sql(expr: str, p: Params) -> str:
    whens = " ".join(f"when {expr} >= {p.bind(floor, 'double')} then {p.bind(word)}" for floor, word in LEVELS)
    return f"case {whens} else {p.bind(LOW)} end"


def _measure_sql(words: str, expr: str, missing: str, p: Params) -> str:
    return (
        f"case when {expr} is null then {p.bind(missing)} "
        f"else {_level_sql(expr, p)} || {p.bind(' ' + words + ' (')} || printf('%.2f', {expr}) || ')' end"
    )


def reason_sql(
    action_id: str,
    explicit: bool,
    priority: int,
    trigger_sql: str,
    propensity_name: str,
    propensity_sql: str,
    affinity_sql: str,
    score_sql: str,
    rfm_sql: str,
    p: Params,
) -> str:
    """chosen_because as a SQL text expression over one row: the *_sql arguments are its values."""
    words = PROPENSITY_WORDS[propensity_name]
    return (
        f"{p.bind(kind(action_id, explicit, priority))} || {trigger_sql} || '; ' || "
        f"{_measure_sql(words, propensity_sql, f'no {words} score', p)} || "
        f"{p.bind(f', priority {priority / 100:g}, ')} || "
        f"{_measure_sql('recommendation affinity', affinity_sql, 'no personalised recommendations', p)} || "
        f"'; score ' || printf('%.3f', {score_sql}) || '; RFM segment ' || coalesce({rfm_sql}, 'none')"
    )


def trigger_words(action) -> str:
    """An action's trigger and conditions as the reasons say them (catalogue specs, no one's values)."""
    t = action.trigger
    if t["kind"] == "segment":
        said = [f"in segment {t['segment']}"]
    elif t["kind"] == "rfm_segment":
        said = [f"in RFM segment {' or '.join(t['segments'])}"]
    elif t["kind"] == "event":
        follow = f" and no {t['not_followed_by']} since" if t["not_followed_by"] else ""
        said = [f"{t['event']} in the last {t['within_hours']} hours{follow}"]
    else:
        said = [f"{t['feature']} {t['op']} {t['value']}"]
    for c in action.conditions:
        if c["kind"] == "cart":
            said.append("cart not empty")
        else:
            said.append(f"{c.get('feature') or c['score']} {c['op']} {c['value']}")
    return "; ".join(said)
