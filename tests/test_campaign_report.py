"""The marketer's view (issue 39): the daily campaign report's counts, the unsubscribe link in every
email, the previews, and that no page reaches the network. On the small decisioning warehouse of
tests/test_decisioning.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tessera.decisioning import mailing, reasons, render, report
from tessera.decisioning.catalogue import DEFAULT_FILE, CatalogueError, validate_catalogue
from tessera.privacy import pseudonym
from tests.conftest import write_templates
from tests.test_decisioning import FOOTER, RULE_SEGMENTS, TEMPLATES, actions_data, build_warehouse, run_decide

UNSUBSCRIBE = "https://unsubscribe.shop.example/u"


@pytest.fixture
def templates_dir(tmp_path) -> Path:
    return write_templates(tmp_path / "templates", TEMPLATES)


@pytest.fixture
def catalogue(templates_dir):
    return validate_catalogue(actions_data(), templates_dir, RULE_SEGMENTS)


@pytest.fixture
def warehouse(con):
    build_warehouse(con)
    pseudonym.install(con, pseudonym.DEMO_SALT)
    return con


@pytest.fixture
def day(warehouse, catalogue, tmp_path, monkeypatch):
    """Decided (a 30 % holdout: every decision occurs), rendered with previews, and reported."""
    monkeypatch.setenv("TESSERA_UNSUBSCRIBE_URL", UNSUBSCRIBE)
    monkeypatch.setenv("TESSERA_EMAIL_SENDER", "Mug Shop <hello@mugs.example>")
    run_decide(warehouse, catalogue, holdout_share=0.3)
    mail = mailing.mailing_for(pseudonym.DEMO_SALT)
    previews = tmp_path / "data" / "decisioning" / "previews" / "2026-11-01"
    rendered = render.render_messages(warehouse, catalogue, previews, mailing=mail)
    written = report.write_report(warehouse, catalogue, mail, tmp_path / "data", previews / render.INDEX)
    return SimpleNamespace(con=warehouse, rendered=rendered, written=written, previews=previews, data=tmp_path / "data")


def test_the_reports_counts_per_action_and_variant_equal_the_decisions_counted_in_sql(day, catalogue):
    expected = {
        (a, d): n
        for a, d, n in day.con.execute(
            "select action_id, decision, count(*) from decisioning.decisions group by all"
        ).fetchall()
    }
    assert {d for _, d in expected} >= {"send", "holdout", "no_consent", "capped"}  # every column has a case
    page = day.written.path.read_text()
    facts = json.loads((day.written.path.parent / "2026-11-01.json").read_text())
    for action in catalogue.batch_actions:
        section = page.split(f"<section class='card' id='{action.id}'>")[1].split("</section>")[0]
        cells = dict(re.findall(r"data-count='(\w+)'>([\d,]+)<", section))
        want = {d: expected.get((action.id, d), 0) for d in report.DECISIONS}
        assert {k: int(v.replace(",", "")) for k, v in cells.items()} == {"audience": sum(want.values()), **want}
        assert facts["actions"][action.id] == {
            "audience": sum(want.values()),
            **want,
            "variants": {
                v.id: day.con.execute(
                    "select count(*) from decisioning.decisions where action_id = ? and variant_id = ? and decision = 'send'",
                    [action.id, v.id],
                ).fetchall()[0][0]
                for v in action.variants
            },
        }
    assert facts["totals"]["send"] == day.rendered.messages == 4
    assert facts["totals"]["audience"] == sum(expected.values())
    # the bandit's split: no outcome yet, so Beta(1, 1) for both banner variants: no state version here
    assert "Uplift:</b> not yet known: publish.campaign_uplift is not built yet" in page
    assert day.written.latest.read_text() == page
    assert "<script" not in page and "c_cart_and_picks" not in page and "pk_" + "0" * 32 in page


def test_the_reports_reason_is_the_formatters_for_the_median_customer(day, catalogue):
    page = day.written.path.read_text()
    row = day.con.execute(
        "select max(priority), median(propensity), median(recommendation_affinity), median(score) "
        "from decisioning.decisions where action_id = 'cart'"
    ).fetchall()[0]
    said = reasons.chosen_because(
        "cart", True, row[0], "in segment cart_abandoned_2h", "purchase_propensity_30d", row[1], row[2], row[3],
        "Loyal (the most common)",
    )  # fmt: skip
    assert said.startswith("cart (explicit rule, priority 90: wins over scored actions) chosen because: ")
    assert f"<b>Why:</b> {said}</p>" in page.replace("&#x27;", "'")


def test_every_email_carries_an_unsubscribe_link_whose_token_names_its_consent_record(day):
    rows = day.con.execute(
        "select customer_key, body from decisioning.messages where channel = 'email' order by 1"
    ).fetchall()
    assert len(rows) >= 2
    for customer_key, body in rows:
        [link] = re.findall(r'<a href="([^"]+)">Unsubscribe</a>', body)
        assert link.startswith(UNSUBSCRIBE + "?token=")
        token = link.split("?token=")[1]
        assert mailing.verify(pseudonym.DEMO_SALT, token) == (
            pseudonym.pseudonym(pseudonym.DEMO_SALT, customer_key),
            "email",
            "marketing",
        )
        assert customer_key not in link  # the internal key never leaves
    # banners carry none
    banners = day.con.execute("select body from decisioning.messages where channel <> 'email'").fetchall()
    assert banners and not any("token=" in b for (b,) in banners)


@pytest.mark.parametrize(
    "token, problem",
    [
        ("pk_" + "1" * 32 + ".email.marketing." + "0" * 32, "signature does not match"),
        ("c_cart_and_picks.email.marketing.x", "not an unsubscribe token"),
        ("", "not an unsubscribe token"),
    ],
)
def test_a_forged_or_malformed_unsubscribe_token_is_refused(token, problem):
    with pytest.raises(mailing.InvalidToken, match=problem):
        mailing.verify(pseudonym.DEMO_SALT, token)
    good = mailing.token(pseudonym.DEMO_SALT, "pk_" + "1" * 32, "email")
    with pytest.raises(mailing.InvalidToken):
        mailing.verify("another-salt-of-sixteen", good)


@pytest.mark.parametrize(
    "source, message",
    [
        ("<p>Hi {{ customer.first_name }}</p>", "an email template must carry the unsubscribe link"),
        # read, but not as a link
        ("<p>{{ unsubscribe.url }}</p>", "does not print it as a link's href"),
    ],
)
def test_an_email_template_without_the_unsubscribe_link_fails_validation(templates_dir, source, message):
    (templates_dir / "body.html.j2").write_text(source)
    with pytest.raises(CatalogueError) as err:
        validate_catalogue(actions_data(), templates_dir, RULE_SEGMENTS)
    assert "action 'cart': field 'variants[0].template'" in str(err.value) and message in str(err.value)
    # a banner needs none
    (templates_dir / "body.html.j2").write_text("<p>Hi</p>" + FOOTER)
    assert validate_catalogue(actions_data(), templates_dir, RULE_SEGMENTS).action("banner")


def test_tessera_decisioning_validate_exits_2_naming_the_template_without_the_link(tmp_path):
    shipped = DEFAULT_FILE.parent / "templates"
    (tmp_path / "templates").mkdir()
    for f in shipped.iterdir():
        text = f.read_text()
        if f.name == "weekly_picks.html.j2":
            text = text.replace('<a href="{{ unsubscribe.url }}">Unsubscribe</a>', "Unsubscribe")
        (tmp_path / "templates" / f.name).write_text(text)
    (tmp_path / "actions.yml").write_text(yaml.safe_dump(yaml.safe_load(DEFAULT_FILE.read_text())))
    done = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "decisioning", "validate", "--file", str(tmp_path / "actions.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "weekly_picks.html.j2: an email template must carry the unsubscribe link" in done.stderr


def test_the_previews_show_titles_an_email_frame_and_banners_drawn(day, catalogue):
    index = (day.previews / render.INDEX).read_text()
    assert "<b>Picks</b>" in index and "<b>Banner</b>" in index and ">preview 1</a>" in index
    # link texts are titles, never the message ids
    assert not re.search(r">[0-9a-f]{32}</a>", index)
    emails = [p for a, *_, p in day.rendered.previews if a != "banner"]
    banners = [p for a, *_, p in day.rendered.previews if a == "banner"]
    assert emails and banners and all(p.suffix == ".html" for p in emails + banners)
    mail = emails[0].read_text()
    assert "<div class='subject'>Hi <b>" in mail or "<div class='subject'>Hi &lt;b&gt;" in mail
    assert "<b>From:</b> Mug Shop &lt;hello@mugs.example&gt;" in mail
    assert "class='pre'" in mail and ">Unsubscribe</a>" in mail and "Tessera Shop Ltd" in mail
    banner = banners[0].read_text()
    assert "<div class='banner hero'><div class='headline'>" in banner and "payload (JSON)" in banner


def test_no_page_requests_anything_but_the_unsubscribe_link(day):
    pages = [*day.previews.rglob("*.html"), *day.written.path.parent.glob("*.html")]
    assert len(pages) >= 6
    for page in pages:
        text = page.read_text()
        urls = re.findall(r"""(?:https?:)?//[^\s"'<>)]+""", text)
        assert all(u.startswith(UNSUBSCRIBE) for u in urls), (page.name, urls)
        assert not re.search(r"<(script|img|link|iframe)\b|@import|url\(", text), page.name


def test_the_run_summary_line_points_at_the_latest_report(day):
    line = report.summary_line(SimpleNamespace(data_dir=day.data))
    assert line == (
        f"campaign report for 2026-11-01: {day.data / 'reports' / 'campaigns' / 'latest.html'} "
        "(4 sent, " + line.split("(4 sent, ")[1]
    )
    facts = json.loads((day.data / "reports" / "campaigns" / "latest.json").read_text())["totals"]
    assert line.endswith(
        f"({facts['send']:,} sent, {facts['holdout']:,} held out, {facts['no_consent']:,} without consent, "
        f"{facts['capped']:,} capped)"
    )
    assert report.summary_line(SimpleNamespace(data_dir=Path("/nonexistent"))) is None
