"""Decisioning (issue 10): catalogue and template validation, escaping, rule precedence,
frequency caps, consent and holdout, reasons, the bandit's updates and convergence, and what the
pipeline publishes."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import jinja2
import numpy as np
import pytest
import yaml

from tessera.decisioning import bandit, decide, reasons, render, state
from tessera.decisioning.catalogue import (
    DEFAULT_FILE,
    CatalogueError,
    load_catalogue,
    validate_catalogue,
)
from tessera.decisioning.templates import TemplateError, load_template
from tessera.privacy import pseudonym
from tessera.settings import DBT_PROJECT_DIR
from tests.conftest import write_templates

HOSTILE = "<script>alert('x')</script> \"Deluxe\" \\ Mug"
AS_OF = date(2026, 11, 1)
RULE_SEGMENTS = {"cart_abandoned_2h", "vip_lapsing", "category_browser_no_purchase", "email_engaged"}


# --- a catalogue of our own, so each rule is exactly what the test says -------------------------

# what every email template ends with (tessera/decisioning/mailing.py): the link revoking the consent
FOOTER = '<p><a href="{{ unsubscribe.url }}">Unsubscribe</a> {{ shop.address }}</p>'

TEMPLATES = {
    "body.html.j2": "<p>Hi {{ customer.first_name }}</p>{% for i in cart_items %}<li>{{ i.product_name }}</li>{% endfor %}"
    "{% for i in recommendations %}<li>{{ i.product_name }}</li>{% endfor %}" + FOOTER,
    "banner.json.j2": '{"headline": "{{ recommendations[0].product_name if recommendations else customer.top_category }}"}',
}


def actions_data() -> dict:
    email = {
        "channel": "email",
        "variants": [{"id": "a", "template": "body.html.j2", "subject": "Hi {{ customer.first_name }}"}],
    }
    return {
        "version": 1,
        "scoring": {"priority": 0.3, "propensity": 0.4, "recommendation": 0.3},
        "actions": [
            {"id": "cart", "description": "cart", "explicit": True, "trigger": {"segment": "cart_abandoned_2h"},
             "priority": 90, "frequency_cap_per_week": 1, **email},
            {"id": "vip", "description": "vip", "explicit": True, "trigger": {"segment": "vip_lapsing"},
             "priority": 95, "frequency_cap_per_week": 1, **email},
            # scored, with a higher priority than both explicit rules: it must still lose to them
            {"id": "picks", "description": "picks", "trigger": {"feature": "frequency", "op": ">=", "value": 1},
             "priority": 100, "frequency_cap_per_week": 2, **email},
            {"id": "browse", "description": "browse", "trigger": {"feature": "categories_browsed", "op": ">=", "value": 1},
             "priority": 10, "frequency_cap_per_week": 2, **email},
            {"id": "banner", "description": "banner", "trigger": {"feature": "categories_browsed", "op": ">=", "value": 1},
             "channel": "web_banner", "priority": 50, "frequency_cap_per_week": 7,
             "variants": [{"id": "x", "template": "banner.json.j2"}, {"id": "y", "template": "banner.json.j2"}]},
        ],
    }  # fmt: skip


@pytest.fixture
def templates_dir(tmp_path) -> Path:
    return write_templates(tmp_path / "templates", TEMPLATES)


@pytest.fixture
def catalogue(templates_dir):
    return validate_catalogue(actions_data(), templates_dir, RULE_SEGMENTS)


# --- a small warehouse with exactly the relations decisioning reads -----------------------------

# customer -> (cart segment, vip segment, frequency, categories browsed, propensity, affinity score)
CUSTOMERS = {
    "c_cart_and_picks": (True, False, 3, 0, 0.9, 0.9),  # explicit cart beats the scored picks
    "c_two_explicit": (True, True, 3, 2, 0.1, 0.1),  # vip (95) beats cart (90)
    "c_scored_high": (False, False, 2, 4, 0.8, 0.8),  # picks (0.3 + ...) beats browse (0.03 + ...)
    "c_cart_capped": (True, False, 1, 0, 0.5, 0.5),  # cart sent yesterday: falls to picks
    "c_all_capped": (True, False, 0, 0, 0.5, 0.5),  # only cart, sent yesterday: capped
    "c_two_capped": (True, False, 1, 0, 0.5, 0.5),  # cart and picks both at their caps
    "c_no_consent": (True, False, 0, 0, 0.5, 0.5),
    "c_nothing": (False, False, 0, 0, 0.5, 0.5),
    "c_erased": (True, False, 1, 1, 0.5, 0.5),
}


def build_warehouse(con, product_name: str = "Plain Mug") -> None:
    for schema in ("marts", "ml", "staging", "decisioning"):
        con.execute(f"create schema if not exists {schema}")
    keys = list(CUSTOMERS)
    con.execute(
        "create table marts.dim_customers (customer_key varchar, first_name varchar, is_erasure_requested boolean, "
        "email varchar, cookie_count bigint)"
    )
    con.executemany(
        "insert into marts.dim_customers values (?, ?, ?, ?, 1)",
        [(k, f"<b>{k}</b>", k == "c_erased", f"{k}@example.com") for k in keys],
    )
    # decisions start from audiences.active_customers: the dbt view itself, rendered over this dim_customers
    model = (DBT_PROJECT_DIR / "models" / "audiences" / "active_customers.sql").read_text()
    view = jinja2.Template(model).render(ref=lambda name: f"marts.{name}", config=lambda **_: "")
    con.execute("create schema audiences")
    con.execute(f"create view audiences.active_customers as {view}")
    con.execute("create table marts.fct_orders (customer_key varchar, channel varchar)")
    con.execute("create table marts.customer_rfm (customer_key varchar, rfm_segment varchar, as_of_date date)")
    con.executemany("insert into marts.customer_rfm values (?, 'Loyal', ?)", [(k, AS_OF) for k in keys])
    con.execute(
        "create table marts.customer_rule_segments (customer_key varchar, in_cart_abandoned_2h boolean, in_vip_lapsing boolean, "
        "in_category_browser_no_purchase boolean, in_email_engaged boolean, rule_segment varchar, rule_segment_priority int)"
    )
    con.executemany(
        "insert into marts.customer_rule_segments values (?, ?, ?, false, false, null, null)",
        [(k, v[0], v[1]) for k, v in CUSTOMERS.items()],
    )
    con.execute(
        "create table marts.customer_features (customer_key varchar, frequency int, categories_browsed int, "
        "top_category varchar, last_device varchar)"
    )
    con.executemany(
        "insert into marts.customer_features values (?, ?, ?, 'kitchen', 'mobile')",
        [(k, v[2], v[3]) for k, v in CUSTOMERS.items()],
    )
    con.execute(
        "create table ml.propensity_scores (customer_key varchar, purchase_propensity_30d double, churn_risk_30d double)"
    )
    con.executemany("insert into ml.propensity_scores values (?, ?, 0.5)", [(k, v[4]) for k, v in CUSTOMERS.items()])
    con.execute(
        "create table ml.recommendation_candidates (customer_key varchar, rank bigint, product_id varchar, score double, "
        "source varchar, max_per_category bigint)"
    )
    con.executemany(
        "insert into ml.recommendation_candidates values (?, 1, 'P1', ?, 'personalised', 3)",
        [(k, v[5]) for k, v in CUSTOMERS.items()],
    )
    con.execute("create table ml.customer_clusters (customer_key varchar, cluster_description varchar)")
    con.execute(
        "create table marts.dim_products (product_id varchar, product_name varchar, category varchar, is_active boolean)"
    )
    con.execute(
        "insert into marts.dim_products values ('P1', ?, 'kitchen', true), ('P2', 'Spoon', 'kitchen', true)",
        [product_name],
    )
    con.execute(
        "create table marts.fct_events "
        "(customer_key varchar, event_type varchar, event_at timestamp, product_id varchar, anonymous_id varchar)"
    )
    added = datetime(2026, 10, 30, 12)
    con.executemany(
        "insert into marts.fct_events values (?, 'add_to_cart', ?, 'P1', 'cookie-' || ?)",
        [(k, added, k) for k, v in CUSTOMERS.items() if v[0]],
    )
    con.execute(
        "create table marts.fct_order_items (customer_key varchar, product_id varchar, ordered_at timestamp, "
        "line_type varchar default 'sale')"
    )
    con.execute(
        "create table marts.fct_customer_product_interactions (customer_key varchar, product_id varchar, interaction_type varchar)"
    )
    con.execute(
        "create table marts.customer_consents (customer_key varchar, channel varchar, purpose varchar, granted boolean)"
    )
    for k in keys:
        for channel, purpose in (("email", "marketing"), ("web", "personalization"), ("email", "personalization")):
            con.execute(
                "insert into marts.customer_consents values (?, ?, ?, ?)", [k, channel, purpose, k != "c_no_consent"]
            )
    con.execute(decide.SENDS_DDL)
    yesterday = AS_OF - timedelta(days=1)
    con.executemany(
        "insert into decisioning.sends values (?, ?, 'cart', 'a', 'email', ?)",
        [(f"m_{k}", k, yesterday) for k in ("c_cart_capped", "c_all_capped", "c_two_capped")],
    )
    con.executemany(
        "insert into decisioning.sends values (?, 'c_two_capped', 'picks', 'a', 'email', ?)",
        [(f"m_picks_{i}", yesterday - timedelta(days=i)) for i in range(2)],
    )
    # a send 8 days ago is outside the 7-day cap window
    con.execute(
        "insert into decisioning.sends values ('m_old', 'c_cart_and_picks', 'cart', 'a', 'email', ?)",
        [AS_OF - timedelta(days=8)],
    )


@pytest.fixture
def warehouse(con):
    build_warehouse(con)
    pseudonym.install(con, pseudonym.DEMO_SALT)
    return con


def run_decide(con, catalogue, holdout_share: float = 0.0):
    posteriors = {a.id: bandit.empty(tuple(v.id for v in a.variants)) for a in catalogue.actions}
    decide.decide(con, catalogue, posteriors, 1, 42, holdout_share)
    rows = con.execute(
        "select customer_key, channel, action_id, decision, decided_by, variant_id, reason, message_id, holdout_group "
        "from decisioning.decisions"
    ).fetchall()
    return {
        (r[0], r[1]): dict(
            zip(["action", "decision", "decided_by", "variant", "reason", "message_id", "holdout"], r[2:], strict=True)
        )
        for r in rows
    }


# --- catalogue and templates ------------------------------------------------------------------


def test_the_shipped_catalogue_and_its_templates_validate():
    catalogue = load_catalogue()
    assert len(catalogue.actions) >= 5
    assert {a.channel for a in catalogue.actions} == {"email", "web_banner", "push"}
    assert any(a.explicit for a in catalogue.actions) and any(not a.explicit for a in catalogue.actions)
    assert abs(sum(catalogue.weights.values()) - 1) < 1e-9


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["actions"][0].update(channel="fax"), "action 'cart': field 'channel': must be one of"),
        (lambda d: d["actions"][1].update(frequency_cap_per_week=0), "action 'vip': field 'frequency_cap_per_week'"),
        (lambda d: d["actions"][2].update(trigger={"segment": "nope"}), "action 'picks': field 'trigger.segment': no rule segment 'nope'"),
        (lambda d: d["actions"][2].update(variants=[]), "action 'picks': field 'variants': needs at least one"),
        (lambda d: d["actions"][3].update(colour="red"), "action 'browse': field 'colour': unknown field"),
        (
            lambda d: d["actions"][4]["variants"][0].update(template="body.html.j2"),
            "action 'banner': field 'variants[0].template': a web_banner template is a .json.j2 file",
        ),
        (
            lambda d: d["actions"][0]["variants"][0].pop("subject"),
            "action 'cart': field 'variants[0].subject': is required on the email channel",
        ),
        (
            lambda d: d["actions"][0].update(offer={"code": "X1", "description": "d", "discount_percent": 200}),
            "action 'cart': field 'offer.discount_percent'",
        ),
        (lambda d: d["actions"].append(dict(d["actions"][0])), "action 'cart': field 'id': is used twice"),
        (lambda d: d.update(scoring={"priority": 1, "propensity": 1, "recommendation": 1}), "weights must sum to 1"),
    ],
)  # fmt: skip
def test_an_invalid_catalogue_names_the_action_and_the_field(templates_dir, change, message):
    data = actions_data()
    change(data)
    with pytest.raises(CatalogueError) as err:
        validate_catalogue(data, templates_dir, RULE_SEGMENTS)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "source, message",
    [
        ("{{ customer.loyalty_points }}", "uses 'customer.loyalty_points', which no customer record provides"),
        ("{{ coupon_code }}", "uses variable 'coupon_code', which no customer record provides"),
        # in a branch no test customer would reach: still caught, before anything is sent
        ("{% if customer.first_name == 'zz' %}{{ customer.shoe_size }}{% endif %}", "customer.shoe_size"),
        ("{% for p in recommendations %}{{ p.price }}{% endfor %}", "uses 'p.price'"),
        ("{{ recommendations[0].price }}", "recommendations[...].price"),
        ("{{ offer.code }}", "uses 'offer', which this action does not provide"),
        ("{{ customer.first_name }", "line 1"),
        # a later loop reusing the name must not hide a typo in an earlier one
        (
            "{% for i in cart_items %}{{ i.product_nam }}{% endfor %}{% for i in recommendations[:2] %}{{ i.rank }}{% endfor %}",
            "uses 'i.product_nam'",
        ),
        ("{% for p in recommendations[:2] %}{{ p.price }}{% endfor %}", "uses 'p.price'"),
        ("{% for p in recommendations|reverse %}{{ p.price }}{% endfor %}", "uses 'p.price'"),
        ("{% for p in recommendations %}{% endfor %}{{ p }}", "uses variable 'p'"),
        ("{% set c = customer %}{{ c.shoe_size }}", "uses 'c.shoe_size'"),
        ("{% with c = customer %}{{ c.shoe_size }}{% endwith %}", "uses 'c.shoe_size'"),
        ("{{ customer|attr('shoe_size') }}", "uses 'customer.shoe_size'"),
        ("{{ recommendations|map(attribute='price')|join }}", "the map filter reads 'price'"),
        ("{{ recommendations|selectattr('price')|list }}", "the selectattr filter reads 'price'"),
        ("{{ customer.first_name.bogus }}", "is a single value"),
        ("{{ recommendations[0]['price'] }}", "recommendations[...].price"),
        ("{% for p in recommendations %}{{ loop.bogus }}{% endfor %}", "uses 'loop.bogus'"),
        ("{% macro m(x) %}{{ x.y }}{% endmacro %}", "{% macro %} is not allowed"),
        ("{% include 'other.html.j2' %}", "{% include %} is not allowed"),
        ("{{ customer.first_name|safe }}", "the safe filter would print 'customer.first_name' unescaped"),
        ("{% autoescape false %}{{ customer.first_name }}{% endautoescape %}", "{% autoescape %} is not allowed"),
    ],
)
def test_a_template_reading_what_no_customer_record_provides_fails_at_validation(templates_dir, source, message):
    (templates_dir / "body.html.j2").write_text(source)
    with pytest.raises(CatalogueError) as err:
        validate_catalogue(actions_data(), templates_dir, RULE_SEGMENTS)
    assert "action 'cart': field 'variants[0].template'" in str(err.value)
    assert message in str(err.value)


def test_what_templates_may_do_still_validates(templates_dir):
    source = (
        "{{ recommendations|map(attribute='product_name')|join(', ') }}"
        "{% for p in recommendations|sort(attribute='rank') %}{{ loop.index }}. {{ p.category }}{% endfor %}"
        "{% set n = recommendations|length %}{{ n }} {{ (recommendations|first).product_name if recommendations }}"
        "{% for i in cart_items %}{{ i['product_name']|upper }}{% else %}empty{% endfor %}"
        "{{ customer.first_name|default('there', true) }}{{ recommendations[0].product_id if recommendations }}"
    ) + FOOTER
    (templates_dir / "body.html.j2").write_text(source)
    catalogue = validate_catalogue(actions_data(), templates_dir, RULE_SEGMENTS)
    assert catalogue.action("cart").uses() == {"customer", "recommendations", "cart_items", "unsubscribe", "shop"}


def test_a_subject_is_validated_like_a_template(templates_dir):
    data = actions_data()
    data["actions"][0]["variants"][0]["subject"] = "Hi {{ customer.nickname }}"
    with pytest.raises(CatalogueError, match=r"action 'cart': field 'variants\[0\].subject'.*customer.nickname"):
        validate_catalogue(data, templates_dir, RULE_SEGMENTS)


def context(name: str) -> dict:
    product = {"product_id": "P1", "product_name": name, "category": "kitchen", "rank": 1}
    return {
        "customer": {"first_name": name, "rfm_segment": None, "rule_segment": None, "cluster_description": None,
                     "top_category": name, "last_device": None},
        "recommendations": [product], "cart_items": [product], "offer": None,
        "action": {"id": "a", "channel": "email"}, "variant": {"id": "v"},
        "shop": {"name": "S", "address": "1 Road", "sender": "S <s@shop.example>"},
        "unsubscribe": {"url": "https://shop.example/u?token=t"},
    }  # fmt: skip


def test_a_hostile_product_name_is_escaped_in_html_and_json_and_a_subject_stays_plain_text(catalogue):
    ctx = context(HOSTILE)
    variant = catalogue.action("cart").variants[0]
    body = variant.template.render(ctx)
    banner = catalogue.action("banner").variants[0].template.render(ctx)
    for text in (body, banner):
        assert "<script>" not in text and "&lt;script&gt;" in text
    # an email subject is not HTML: the customer would read "&lt;"; whoever shows it in HTML escapes it
    assert variant.subject.render(ctx) == f"Hi {HOSTILE}"
    # the banner is still valid JSON, with the quote and backslash intact inside the escaped value
    headline = json.loads(banner)["headline"]
    assert headline == "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &#34;Deluxe&#34; \\ Mug"


def test_a_subject_cannot_carry_a_line_break_or_a_control_character(catalogue):
    subject = catalogue.action("cart").variants[0].subject.render(context("Ann\r\nBcc: all@example.com\x00"))
    assert subject == "Hi Ann Bcc: all@example.com"


def test_rendering_fails_loudly_on_a_missing_value_instead_of_printing_nothing(templates_dir):
    template = load_template(
        templates_dir / "body.html.j2", {"customer", "recommendations", "cart_items", "unsubscribe", "shop"}
    )
    ctx = context("x")
    del ctx["customer"]["first_name"]
    with pytest.raises(Exception, match="first_name"):
        template.render(ctx)


def test_an_unknown_template_kind_is_refused(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(TemplateError, match=r"\.html\.j2"):
        load_template(tmp_path / "x.txt", set())


# --- decisions ---------------------------------------------------------------------------------


def test_explicit_rules_win_over_scored_actions_and_caps_skip_to_the_next_action(warehouse, catalogue):
    d = run_decide(warehouse, catalogue)
    email = {k: v for (k, ch), v in d.items() if ch == "email"}
    # explicit beats a scored action with a higher priority and score
    assert email["c_cart_and_picks"]["action"] == "cart"
    assert email["c_cart_and_picks"]["decided_by"] == "explicit_rule"
    # between explicit rules, the higher priority
    assert email["c_two_explicit"]["action"] == "vip"
    # between scored actions, the higher weighted score
    assert email["c_scored_high"]["action"] == "picks"
    assert email["c_scored_high"]["decided_by"] == "weighted_score"
    # cart was sent yesterday (cap 1 a week): the next eligible action is taken, and the reason says so
    assert email["c_cart_capped"]["action"] == "picks"
    assert "skipped at its frequency cap: cart (1 sent in 7 days, cap 1)" in email["c_cart_capped"]["reason"]
    # only a capped action is eligible: recorded, not sent
    assert email["c_all_capped"]["decision"] == "capped" and email["c_all_capped"]["message_id"] is None
    # a send 8 days ago does not count against the weekly cap
    assert email["c_cart_and_picks"]["decision"] == "send"
    assert "c_nothing" not in email
    assert "c_erased" not in {k for k, _ in d}


def test_a_reason_lists_every_capped_action_in_a_fixed_order(warehouse, catalogue):
    d = run_decide(warehouse, catalogue)
    two = d[("c_two_capped", "email")]
    assert two["decision"] == "capped" and two["action"] == "cart"
    assert (
        "skipped at its frequency cap: cart (1 sent in 7 days, cap 1), picks (2 sent in 7 days, cap 2)" in two["reason"]
    )
    assert run_decide(warehouse, catalogue) == d


def test_event_rfm_and_cart_conditions(warehouse, templates_dir):
    data = actions_data()
    data["actions"] = [
        {"id": "cart_event", "description": "d", "trigger": {"event": "add_to_cart", "within_hours": 48, "not_followed_by": "purchase"},
         "conditions": [{"cart": "not_empty"}], "channel": "web_banner", "priority": 50, "frequency_cap_per_week": 7,
         "variants": [{"id": "x", "template": "banner.json.j2"}]},
        {"id": "loyal", "description": "d", "trigger": {"rfm_segment": ["Loyal"]}, "channel": "email", "priority": 10,
         "frequency_cap_per_week": 7, "variants": [{"id": "a", "template": "body.html.j2", "subject": "Hi"}]},
    ]  # fmt: skip
    catalogue = validate_catalogue(data, templates_dir, RULE_SEGMENTS)
    added = datetime(2026, 10, 30, 12)
    # bought the product afterwards (an order line, so the cart is empty); clicked purchase afterwards
    warehouse.execute(
        "insert into marts.fct_order_items (customer_key, product_id, ordered_at) values ('c_cart_and_picks', 'P1', ?)",
        [added + timedelta(hours=5)],
    )
    warehouse.execute(
        "insert into marts.fct_events values ('c_two_explicit', 'purchase', ?, 'P2', 'cookie-c_two_explicit')",
        [added + timedelta(hours=1)],
    )
    # added 3 days before the as-of day: outside the 48 hours
    warehouse.execute(
        "insert into marts.fct_events values ('c_nothing', 'add_to_cart', ?, 'P1', 'cookie-c_nothing')",
        [added - timedelta(days=2)],
    )
    d = run_decide(warehouse, catalogue)
    banner = {k for (k, ch), v in d.items() if ch == "web_banner"}
    carts = {k for k, v in CUSTOMERS.items() if v[0]} - {"c_erased"}
    assert banner == carts - {"c_cart_and_picks", "c_two_explicit"}
    reason = d[("c_no_consent", "web_banner")]["reason"]
    assert "add_to_cart in the last 48 hours and no purchase since; cart holds 1 product(s)" in reason
    assert {k for (k, ch) in d if ch == "email"} == set(CUSTOMERS) - {"c_erased"}  # all Loyal
    assert d[("c_nothing", "email")]["reason"].startswith(
        "loyal (highest weighted score) chosen because: in RFM segment Loyal; "
    )


def test_no_decision_is_made_on_a_channel_the_customer_cannot_be_reached_on(warehouse, templates_dir):
    # regression (issue 32): a CRM delivery without its email column left every customer without an
    # address, and 1,235 email "send" decisions were still made for them
    data = actions_data()
    data["actions"].append(
        {"id": "app_nudge", "description": "d", "trigger": {"feature": "frequency", "op": ">=", "value": 0},
         "channel": "push", "priority": 5, "frequency_cap_per_week": 7,
         "variants": [{"id": "p", "template": "banner.json.j2", "subject": "Hi"}]}
    )  # fmt: skip
    catalogue = validate_catalogue(data, templates_dir, RULE_SEGMENTS)
    warehouse.execute("update marts.dim_customers set email = null where customer_key = 'c_scored_high'")
    # never seen online: no linked cookie, and a store purchase only
    warehouse.execute("update marts.dim_customers set cookie_count = 0 where customer_key = 'c_scored_high'")
    warehouse.execute("insert into marts.fct_orders values ('c_scored_high', 'pos'), ('c_two_explicit', 'app')")
    d = run_decide(warehouse, catalogue)
    channels = {ch for (k, ch) in d if k == "c_scored_high"}
    assert channels == set(), channels  # eligible for picks (email) and the banner, reachable on neither
    # the others keep their decisions; push only for the one customer who orders in the app
    assert {k for (k, ch) in d if ch == "push"} == {"c_two_explicit"}
    assert d[("c_cart_and_picks", "email")]["decision"] == "send"
    unreachable = {
        r[0]: r[1:]
        for r in warehouse.execute(
            "select channel, reason, customers, customers_with_an_eligible_action from decisioning.unreachable"
        ).fetchall()
    }
    assert unreachable == {
        "email": ("no valid email address", 1, 1),
        "web_banner": ("never seen on the website or app", 1, 1),
        "push": ("no app use on record (no order placed in the app)", 7, 7),
    }


def test_a_message_keeps_its_variant_when_other_customers_come_or_go(warehouse, catalogue):
    first = run_decide(warehouse, catalogue)
    banners = {k: v["variant"] for (k, ch), v in first.items() if ch == "web_banner" and v["decision"] == "send"}
    assert len(banners) >= 2
    gone = min(banners)
    warehouse.execute("update marts.dim_customers set is_erasure_requested = true where customer_key = ?", [gone])
    second = run_decide(warehouse, catalogue)
    assert {k: v["variant"] for (k, ch), v in second.items() if ch == "web_banner" and v["decision"] == "send"} == {
        k: v for k, v in banners.items() if k != gone
    }


def test_every_decision_records_a_reason_with_its_rule_segment_and_score(warehouse, catalogue):
    d = run_decide(warehouse, catalogue)
    assert d and all(v["reason"] and len(v["reason"]) > 40 for v in d.values())
    cart = d[("c_cart_and_picks", "email")]["reason"]
    assert cart.startswith(
        "cart (explicit rule, priority 90: wins over scored actions) chosen because: in segment cart_abandoned_2h; "
        "high propensity to buy again (0.90), priority 0.9, high recommendation affinity ("
    )
    assert "RFM segment Loyal" in cart and "variant by Thompson sampling (bandit state v1" in cart
    picks = d[("c_scored_high", "email")]["reason"]
    assert picks.startswith(
        "picks (highest weighted score) chosen because: frequency 2 >= 1; high propensity to buy again (0.80), priority 1, "
    )
    assert "; score 0." in picks and "formula" not in picks and " x priority" not in picks


def test_the_reason_in_sql_is_the_reason_formatter_word_for_word(warehouse, catalogue):
    # issue 39: reasons read "score 0.594 = 0.3 x priority 0.5 + ..."; one formatter now writes them,
    # in SQL for every decision and in Python for the campaign report
    run_decide(warehouse, catalogue)
    rows = warehouse.execute(
        "select d.action_id, d.priority, d.propensity, d.recommendation_affinity, d.score, d.reason, r.rfm_segment "
        "from decisioning.decisions as d inner join marts.customer_rfm as r using (customer_key)"
    ).fetchall()
    assert len(rows) >= 8
    for action_id, priority, propensity, affinity, score, reason, rfm in rows:
        action = catalogue.action(action_id)
        trigger = reason.split(" chosen because: ")[1].split("; ")[0]
        expected = reasons.chosen_because(
            action_id, action.explicit, priority, trigger, action.propensity, propensity, affinity, score, rfm
        )
        assert reason.startswith(expected + ";"), (reason, expected)
    assert reasons.chosen_because("a", False, 50, "t", "churn_risk_30d", None, 0.1, 0.15, None) == (
        "a (highest weighted score) chosen because: t; no risk of lapsing score, priority 0.5, "
        "low recommendation affinity (0.10); score 0.150; RFM segment none"
    )


def test_customers_without_consent_or_in_the_holdout_receive_nothing(warehouse, catalogue):
    d = run_decide(warehouse, catalogue, holdout_share=0.5)
    assert d[("c_no_consent", "email")]["decision"] == "no_consent"
    assert "not sent: no email marketing consent" in d[("c_no_consent", "email")]["reason"]
    expected_control = {
        (k, a)
        for k, a in warehouse.execute(
            "select customer_key, action_id from decisioning.decisions "
            "where md5_number('nba:' || action_id || ':' || customer_key) % 10000 < 5000"
        ).fetchall()
    }
    assert expected_control  # half of the customers: some are in control
    for (key, _), v in d.items():
        if (key, v["action"]) in expected_control:
            assert v["decision"] in ("holdout", "capped", "no_consent") and v["message_id"] is None
            assert v["holdout"] == "control"
        elif v["decision"] == "send":
            assert v["holdout"] == "treatment" and key != "c_no_consent"
    render.render_messages(warehouse, catalogue, None)
    messages = set(warehouse.execute("select customer_key, action_id from decisioning.messages").fetchall())
    sends = {(k, v["action"]) for (k, _), v in d.items() if v["decision"] == "send"}
    held = {(k, v["action"]) for (k, _), v in d.items() if v["decision"] != "send"}
    assert sends and held and messages == sends
    assert not messages & held and not messages & expected_control
    assert all(k != "c_no_consent" for k, _ in messages)


def test_rendered_messages_escape_a_hostile_product_and_reference_their_bodies_by_hash(con, catalogue, tmp_path):
    build_warehouse(con, product_name=HOSTILE)
    pseudonym.install(con, pseudonym.DEMO_SALT)
    run_decide(con, catalogue)
    out = render.render_messages(con, catalogue, tmp_path / "previews")
    bodies = con.execute("select body_ref, body from decisioning.messages").fetchall()
    assert out.messages == len(bodies) > 0
    assert all("<script>" not in b and "&lt;script&gt;" in b for _, b in bodies)
    assert all(r == "sha256:" + hashlib.sha256(b.encode()).hexdigest() for r, b in bodies)
    # the banners render the same JSON for everyone here: one distinct text, one ref
    refs = con.execute(
        "select count(distinct body_ref), count(*) from decisioning.messages where channel = 'web_banner'"
    ).fetchall()[0]
    assert refs[0] == 1 < refs[1]
    assert out.bodies == len({r for r, _ in bodies})
    # previews: files for the first messages of each variant, and an index linking them
    index = (tmp_path / "previews" / "index.html").read_text()
    for _action, _variant, message_id, _, path in out.previews:
        assert path.is_file() and f"{message_id}" in index
    assert {(a, v) for a, v, *_ in out.previews} == {
        tuple(r) for r in con.execute("select distinct action_id, variant_id from decisioning.messages").fetchall()
    }


def test_erasing_previews_removes_every_days_files_and_index_rows_that_name_the_person(con, catalogue, tmp_path):
    # issue 33: the previews of earlier days are rendered once and never written again, so an
    # erased person's greeting stayed in them
    build_warehouse(con)
    pseudonym.install(con, pseudonym.DEMO_SALT)
    run_decide(con, catalogue)
    root = tmp_path / "previews"
    days = ("2026-10-30", "2026-10-31")
    rendered = {day: render.render_messages(con, catalogue, root / day) for day in days}
    customer_of = dict(con.execute("select message_id, customer_key from decisioning.messages").fetchall())
    previews = rendered[days[0]].previews
    # the person's emails greet them (escaped in the HTML); a banner of theirs does not, it is
    # found by its message id in the file name
    greeted = {m for a, v, m, _, p in previews if customer_of[m] == "c_cart_and_picks" and a != "banner"}
    short = {m for a, v, m, _, p in previews if customer_of[m].startswith("c_two") and a != "banner"}
    banner = next(m for a, v, m, _, p in previews if a == "banner" and customer_of[m] == "c_scored_high")
    assert greeted and short
    gone = greeted | {banner}

    # "c_two" is too short to search for: c_two_explicit's and c_two_capped's previews stay
    counts = render.erase_previews(root, ["<B>C_CART_AND_PICKS</B>", banner, "c_two"])

    assert counts == {"files_removed": 2 * len(gone), "days_touched": 2}
    for day in days:
        index = (root / day / "index.html").read_text()
        for _action, _variant, message_id, _subject, path in rendered[day].previews:
            assert path.is_file() == (message_id not in gone), (day, message_id)
            assert (message_id in index) == (message_id not in gone), (day, message_id)
        assert "c_cart_and_picks" not in index.lower() and "<table" in index
        texts = [f.read_text() for f in (root / day).rglob("*") if f.is_file()]
        assert not any("c_cart_and_picks" in t for t in texts)
        assert all(any(customer_of[m] in t for t in texts) for m in short)
    # erased once: nothing left to do
    assert render.erase_previews(root, ["<b>c_cart_and_picks</b>", banner]) == {"files_removed": 0, "days_touched": 0}
    assert render.erase_previews(tmp_path / "no_previews", [banner]) == {"files_removed": 0, "days_touched": 0}


def test_deciding_and_rendering_again_gives_the_same_rows(warehouse, catalogue):
    run_decide(warehouse, catalogue)
    render.render_messages(warehouse, catalogue, None)
    first = warehouse.execute("select * from decisioning.messages order by message_id").fetchall()
    run_decide(warehouse, catalogue)
    render.render_messages(warehouse, catalogue, None)
    assert warehouse.execute("select * from decisioning.messages order by message_id").fetchall() == first


def test_rendering_in_worker_processes_gives_the_same_rows_previews_and_counts(
    warehouse, catalogue, tmp_path, monkeypatch
):
    # batches of 2 contexts, so each variant spans several batches and the workers finish them in any order
    monkeypatch.setattr(render, "BATCH_ROWS", 2)
    # 20 copies of every customer, in every table keyed by customer: several batches per variant
    tables = warehouse.execute(
        "select c.table_schema, c.table_name from information_schema.columns as c "
        "inner join information_schema.tables as t using (table_schema, table_name) "
        "where c.column_name = 'customer_key' and t.table_type = 'BASE TABLE' and c.table_schema <> 'decisioning'"
    ).fetchall()
    for schema, name in tables:
        columns = [c[0] for c in warehouse.execute(f"describe {schema}.{name}").fetchall()]
        select = ", ".join("t.customer_key || '_' || r.n" if c == "customer_key" else f"t.{c}" for c in columns)
        warehouse.execute(
            f"insert into {schema}.{name} select {select} from {schema}.{name} as t, range(1, 21) as r(n)"
        )
    run_decide(warehouse, catalogue)
    table = "select * from decisioning.messages order by rowid"  # the order rows were inserted in
    alone = render.render_messages(warehouse, catalogue, tmp_path / "alone", workers=1)
    first = warehouse.execute(table).fetchall()
    pooled = render.render_messages(warehouse, catalogue, tmp_path / "pooled", workers=2)
    assert len(first) > 2 * len(alone.per_variant), (
        len(first),
        alone.per_variant,
    )  # several batches per variant on average
    assert warehouse.execute(table).fetchall() == first
    assert (pooled.messages, pooled.bodies, pooled.per_variant) == (alone.messages, alone.bodies, alone.per_variant)
    assert [p[:4] for p in pooled.previews] == [p[:4] for p in alone.previews]
    for a, p in zip(alone.previews, pooled.previews, strict=True):
        assert a[4].read_text() == p[4].read_text()


def test_render_workers_setting_is_a_positive_whole_number(monkeypatch):
    from tessera.settings import load_settings

    monkeypatch.setenv("TESSERA_RENDER_WORKERS", "3")
    assert load_settings().render_workers == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("TESSERA_RENDER_WORKERS", bad)
        with pytest.raises(ValueError, match="TESSERA_RENDER_WORKERS"):
            load_settings()


# --- the bandit -------------------------------------------------------------------------------


def test_thompson_sampling_converges_on_the_better_variant_in_a_seeded_simulation():
    sim = bandit.simulate(("a", "b", "c"), (0.05, 0.05, 0.08), audience=1000, rounds=28, seed=7)
    assert sim.best == 2
    assert sim.share_best_by_round[0] < 0.5  # it starts by exploring
    assert sim.share_best_by_round[-1] >= 0.8
    assert sim.first_round_at(0.8) is not None and sim.first_round_at(0.8) <= 14
    assert sim.final_posterior.mean.argmax() == 2


def test_equal_posteriors_split_traffic_and_assignment_is_reproducible():
    p = bandit.empty(("a", "b"))
    picks = bandit.assign(p, bandit.rng_for(42, 1, 1, "x").random((20_000, 2)))
    assert abs(picks.mean() - 0.5) < 0.02
    assert np.array_equal(picks, bandit.assign(p, bandit.rng_for(42, 1, 1, "x").random((20_000, 2))))
    certain = bandit.Posterior(("a", "b"), np.array([10_000, 10_000]), np.array([100, 900]))
    assert bandit.allocation(certain, bandit.rng_for(1, 0, 0, "y"))[1] == 1.0
    assert bandit.exploration_share(certain, np.array([0.0, 1.0])) == 0.0


def outcome_tables(con) -> None:
    con.execute("create schema staging; create schema marts; create schema decisioning")
    con.execute("create table marts.customer_rfm (customer_key varchar, as_of_date date)")
    con.execute("insert into marts.customer_rfm values ('c1', ?)", [AS_OF])
    con.execute(
        "create table staging.stg_email_events (campaign_id varchar, event_type varchar, event_at timestamp, invalid_reason varchar)"
    )
    con.execute("create table marts.fct_orders (customer_key varchar, status varchar, ordered_at timestamp)")
    con.execute(decide.SENDS_DDL)


def test_the_state_counts_clicks_and_purchases_inside_the_window_of_closed_messages_only(con, catalogue):
    outcome_tables(con)
    day = AS_OF - timedelta(days=10)  # closed: 10 days ago, window 7
    sends = [
        ("m_click", "c1", "banner", "x", day), ("m_invalid_click", "c2", "banner", "x", day),
        ("m_late_click", "c3", "banner", "x", day), ("m_bought", "c4", "banner", "y", day),
        ("m_cancelled", "c5", "banner", "y", day), ("m_nothing", "c6", "banner", "y", day),
        ("m_open", "c7", "banner", "y", AS_OF - timedelta(days=2)),  # window still open: not counted
    ]  # fmt: skip
    con.executemany("insert into decisioning.sends values (?, ?, ?, ?, 'web_banner', ?)", sends)
    at = datetime.combine(day, datetime.min.time())
    con.executemany(
        "insert into staging.stg_email_events values (?, 'click', ?, ?)",
        [("m_click", at + timedelta(days=1), None), ("m_invalid_click", at + timedelta(days=1), "bad"),
         ("m_late_click", at + timedelta(days=8), None), ("m_open", at + timedelta(days=9), None)],
    )  # fmt: skip
    con.executemany(
        "insert into marts.fct_orders values (?, ?, ?)",
        [("c4", "completed", at + timedelta(days=3)), ("c5", "cancelled", at + timedelta(days=3)),
         ("c7", "completed", at + timedelta(days=9))],
    )  # fmt: skip
    counts = state.outcome_counts(con, 7).set_index("variant_id")
    assert counts.loc["x", "trials"] == 3 and counts.loc["x", "conversions"] == 1
    assert counts.loc["y", "trials"] == 3 and counts.loc["y", "conversions"] == 1
    posteriors = state.posteriors_from(state.outcome_counts(con, 7), catalogue)
    assert list(posteriors["banner"].alpha) == [2.0, 2.0] and list(posteriors["banner"].beta) == [3.0, 3.0]
    assert posteriors["cart"].trials.sum() == 0


def test_a_new_state_version_only_when_the_counts_change(con, catalogue):
    outcome_tables(con)
    v1, new1, _, _ = state.update_state(con, catalogue, 42)
    v1_again, new_again, _, _ = state.update_state(con, catalogue, 42)
    assert (v1, new1, v1_again, new_again) == (1, True, 1, False)
    con.execute(
        "insert into decisioning.sends values ('m1', 'c1', 'banner', 'x', 'web_banner', ?)", [AS_OF - timedelta(days=9)]
    )
    v2, new2, _rows, posteriors = state.update_state(con, catalogue, 42)
    assert (v2, new2) == (2, True)
    assert posteriors["banner"].trials.tolist() == [1, 0]
    kept = con.execute(
        "select version, count(*) from decisioning.bandit_state_versions group by 1 order by 1"
    ).fetchall()
    assert [v for v, _ in kept] == [1, 2]  # the first version is kept


# --- the pipeline ------------------------------------------------------------------------------


def test_the_pipeline_publishes_actions_and_an_outbox_within_consent_and_holdout(pipeline):
    from tests.conftest import with_pkeys

    result, settings = pipeline
    con = with_pkeys(duckdb.connect(str(settings.duckdb_path), read_only=True))
    try:
        nba = con.execute(
            "select count(*), count(*) filter (where decision = 'send') from publish.next_best_actions"
        ).fetchall()[0]
        outbox = con.execute("select count(*) from publish.campaign_outbox").fetchall()[0][0]
        assert nba[0] > 0 and nba[1] == outbox > 0
        assert (
            con.execute(
                "select count(*) from publish.next_best_actions where reason is null or reason = ''"
            ).fetchall()[0][0]
            == 0
        )
        # independently of the decisions: every outbox customer has the channel's consent ...
        violations = con.execute("""
            select count(*) from publish.campaign_outbox as o
            inner join marts.dim_customers as c on customer_pkey(c.customer_key) = o.customer_pkey
            left join marts.customer_consents as k on k.customer_key = c.customer_key
                and k.channel = case o.channel when 'email' then 'email' when 'push' then 'push' else 'web' end
                and k.purpose = case o.channel when 'web_banner' then 'personalization' else 'marketing' end
            where not coalesce(k.granted, false)
        """).fetchall()[0][0]
        assert violations == 0
        # ... and is in the treatment group of the action's campaign (tessera/publish/holdout.py, share 0.10)
        control = con.execute("""
            select count(*) from publish.campaign_outbox as o
            inner join marts.dim_customers as c on customer_pkey(c.customer_key) = o.customer_pkey
            where md5_number('nba:' || o.action_id || ':' || c.customer_key) % 10000 < 1000
        """).fetchall()[0][0]
        assert control == 0
        held = con.execute("select count(*) from publish.next_best_actions where decision = 'holdout'").fetchall()[0][0]
        assert held > 0
        # the bodies the outbox refers to are in its snapshot
        from tessera.publish import snapshots

        snap = snapshots.current_snapshot(settings.publish_dir, "campaign_outbox")
        bodies_file = next(f for f in snap.manifest["files"] if f.get("export") == "message_bodies")
        lines = [json.loads(line) for line in (snap.path / bodies_file["path"]).read_text().splitlines()]
        assert {(b["message_id"], b["customer_pkey"], b["body_ref"]) for b in lines} == set(
            con.execute("select message_id, customer_pkey, body_ref from publish.campaign_outbox").fetchall()
        )
        assert all(b["body_ref"] == "sha256:" + hashlib.sha256(b["body"].encode()).hexdigest() for b in lines)
        sends = con.execute("select count(*) from decisioning.sends").fetchall()[0][0]
        assert sends == outbox
    finally:
        con.close()
    metadata = {
        e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    previews = Path(metadata["decisioning/rendered_messages"]["previews"].value)
    assert previews.is_file() and previews.parent.joinpath("cart_abandonment_email").is_dir()
    # the campaign report (issue 39): linked from the UI, its totals those of the decisions
    report = Path(metadata["decisioning/rendered_messages"]["campaign_report"].value)
    facts = json.loads(report.with_suffix(".json").read_text())
    assert report.is_file() and report.parent.joinpath("latest.html").read_text() == report.read_text()
    assert facts["totals"] == metadata["decisioning/rendered_messages"]["sent_held_out_no_consent_capped"].value
    assert facts["totals"]["send"] == outbox and facts["totals"]["holdout"] == held
    bandit_md = metadata["decisioning/bandit_state"]
    assert bandit_md["state_version"].value == 1 and "posterior mean" in bandit_md["posteriors"].value
    # every action with two variants has a posterior; the realtime cart reminder's stays at the
    # prior (its sends are not counted yet: docs/realtime_triggers.md)
    assert set(bandit_md["exploration_share"].value) == {
        "cart_abandonment_email",
        "cart_abandonment_realtime",
        "vip_winback_email",
        "favourite_category_banner",
    }


def test_the_bandit_state_is_an_mlflow_run_with_posterior_means(pipeline):
    from mlflow import MlflowClient

    result, settings = pipeline
    metadata = {
        e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    run = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_run(
        metadata["decisioning/bandit_state"]["mlflow_run_id"].value
    )
    assert run.data.metrics["posterior_mean.favourite_category_banner.top_pick"] == pytest.approx(0.5)
    assert 0.3 < run.data.metrics["exploration_share.favourite_category_banner"] < 0.7  # no outcomes yet: uniform
    assert run.data.params["version"] == "1"


def test_an_invalid_catalogue_fails_the_decision_step_and_nothing_is_published(tmp_path, monkeypatch, warehouse_copy):
    import dagster as dg

    from tests.conftest import run_job

    settings = warehouse_copy
    data = yaml.safe_load(DEFAULT_FILE.read_text())
    data["actions"][0]["channel"] = "carrier_pigeon"
    bad = tmp_path / "actions.yml"
    bad.write_text(yaml.safe_dump(data))
    (tmp_path / "templates").symlink_to(DEFAULT_FILE.parent / "templates")
    monkeypatch.setenv("TESSERA_ACTIONS_FILE", str(bad))
    before = settings.publish_dir.joinpath("campaign_outbox")
    versions = sorted(p.name for p in before.joinpath("versions").iterdir())
    keys = [dg.AssetKey(["decisioning", "bandit_state"]), dg.AssetKey(["decisioning", "decisions"]),
            dg.AssetKey(["decisioning", "rendered_messages"]), dg.AssetKey(["publish", "campaign_outbox"])]  # fmt: skip
    result = run_job(keys)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "action 'cart_abandonment_email': field 'channel'" in str(failure.event_specific_data.error)
    assert sorted(p.name for p in before.joinpath("versions").iterdir()) == versions
