"""The daily campaign report: what the decisioning did today, for the people who run the campaigns.

Written by the rendered-messages step (orchestration/decisioning.py) into
<data dir>/reports/campaigns/<decision day>.html, copied to latest.html, with the same figures in
<day>.json beside it (the run summary's line reads that). One self-contained page (pages.py): per
action and variant

- the audience (customers the action was chosen for on a channel they can be reached on), then
  how many were sent it, held out (the control group of campaign nba:<action>), had no consent,
  or were at their frequency cap: decisioning.decisions;
- the bandit's current split (traffic share per variant, from the latest state version) beside
  today's realised split of the sends, with the messages closed and their conversions;
- the uplift of campaign nba:<action> when publish.campaign_uplift has measured it, otherwise
  "not yet known" and why;
- why the action was chosen, in words (reasons.chosen_because for the median customer);
- a preview of each variant rendered for a made-up sample customer (no one's data), with
  subject, sender and footer.

The page holds counts and medians only: no customer, key or name.
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tessera.db import table_exists
from tessera.decisioning import pages, reasons
from tessera.decisioning import state as bandit_state
from tessera.decisioning.catalogue import Action, Catalogue
from tessera.decisioning.mailing import Mailing
from tessera.decisioning.templates import sample_context

DECISIONS = ("send", "holdout", "no_consent", "capped")
LATEST = "latest"


def report_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "reports" / "campaigns"


@dataclass
class ActionFigures:
    action_id: str
    counts: dict[str, int]  # audience, send, holdout, no_consent, capped
    variants: dict[str, dict] = field(default_factory=dict)  # variant -> sends, share, realised...
    uplift: dict | None = None
    uplift_unknown: str | None = None
    reason: str | None = None


def counts_sql() -> str:
    filters = ", ".join(f"count(*) filter (where decision = '{d}') as {d}" for d in DECISIONS)
    return f"select action_id, count(*) as audience, {filters} from decisioning.decisions group by action_id"


def _counts(con) -> dict[str, dict[str, int]]:
    rows = con.execute(counts_sql()).fetchall()
    return {r[0]: dict(zip(("audience", *DECISIONS), (int(v) for v in r[1:]), strict=True)) for r in rows}


def _variant_sends(con) -> dict[tuple[str, str], int]:
    rows = con.execute(
        "select action_id, variant_id, count(*) from decisioning.decisions where decision = 'send' group by all"
    ).fetchall()
    return {(a, v): int(n) for a, v, n in rows}


def _medians(con, catalogue: Catalogue) -> dict[str, str]:
    """Per action, the reason of its median customer (median propensity, affinity and score; the
    most common RFM segment)."""
    if not table_exists(con, "marts", "customer_rfm"):
        return {}
    rows = con.execute(
        """
        select d.action_id, max(d.priority), median(d.propensity), median(d.recommendation_affinity),
            median(d.score), mode(r.rfm_segment)
        from decisioning.decisions as d
        left join marts.customer_rfm as r on r.customer_key = d.customer_key
        group by d.action_id
        """
    ).fetchall()
    out = {}
    for action_id, priority, propensity, affinity, score, rfm in rows:
        action = catalogue.action(action_id)
        out[action_id] = reasons.chosen_because(
            action_id, action.explicit, int(priority), reasons.trigger_words(action), action.propensity,
            propensity, affinity, float(score), f"{rfm} (the most common)" if rfm else None,
        )  # fmt: skip
    return out


def _uplift(con, action_ids: list[str]) -> tuple[dict[str, dict], str]:
    """The latest measured uplift of each campaign nba:<action>, and why one is unknown."""
    if not table_exists(con, "publish", "campaign_uplift"):
        return {}, "publish.campaign_uplift is not built yet"
    rows = con.execute(
        """
        select campaign, assigned_on, treatment_customers, control_customers, conversion_uplift,
            conversion_uplift_low, conversion_uplift_high, incremental_revenue
        from publish.campaign_uplift
        where campaign in (select 'nba:' || unnest($ids::varchar[]))
        qualify row_number() over (partition by campaign order by assigned_on desc) = 1
        """,
        {"ids": action_ids or [""]},
    ).fetchall()
    found = {
        r[0].removeprefix("nba:"): dict(
            zip(
                ("assigned_on", "treatment", "control", "uplift", "low", "high", "incremental_revenue"),
                r[1:],
                strict=True,
            )
        )
        for r in rows
    }
    why = (
        "no campaign nba:<action> has ended in publish.campaign_uplift: it measures segment campaigns "
        "(rfm:, rule:) once their window has passed, and an action's control group is not yet recorded "
        "day by day"
    )
    return found, why


def figures(con, catalogue: Catalogue) -> tuple[date, list[ActionFigures], int]:
    """Today's figures per batch action (tessera/decisioning/decide.py) from the warehouse."""
    day = con.execute("select max(decided_on) from decisioning.decisions").fetchall()[0][0]
    counts = _counts(con)
    sends = _variant_sends(con)
    version, state = (
        bandit_state.current_version(con) if table_exists(con, "decisioning", "bandit_state_versions") else (0, None)
    )
    shares = {}
    if state is not None:
        for r in state.itertuples():
            shares[(r.action_id, r.variant_id)] = r
    ids = [a.id for a in catalogue.batch_actions]
    uplifts, unknown = _uplift(con, ids)
    why = _medians(con, catalogue)
    out = []
    for action in catalogue.batch_actions:
        c = counts.get(action.id, dict.fromkeys(("audience", *DECISIONS), 0))
        f = ActionFigures(action.id, c, uplift=uplifts.get(action.id), reason=why.get(action.id))
        f.uplift_unknown = None if f.uplift else unknown
        for v in action.variants:
            s = shares.get((action.id, v.id))
            n = sends.get((action.id, v.id), 0)
            f.variants[v.id] = {
                "sends": n,
                "realised_share": n / c["send"] if c["send"] else None,
                "bandit_share": None if s is None else float(s.traffic_share),
                "posterior_mean": None if s is None else float(s.posterior_mean),
                "closed": 0 if s is None else int(s.trials),
                "conversions": 0 if s is None else int(s.conversions),
            }
        out.append(f)
    return day, out, version


def _n(v: int) -> str:
    return f"{v:,}"


def _share(v: float | None) -> str:
    if v is None:
        return "<span class='muted'>n/a</span>"
    return f"<span class='bar' style='width:{round(v * 80)}px'></span>{v:.0%}"


def _action_section(action: Action, f: ActionFigures, mailing: Mailing) -> str:
    c = f.counts
    head = (
        f"<h2>{html.escape(pages.title(action.id))}<span class='pill'>{pages.CHANNEL_NAMES[action.channel]}</span>"
        f"{'<span class=pill>explicit rule</span>' if action.explicit else ''}</h2>"
        f"<p class='muted'>{html.escape(action.description)}</p>"
    )
    cells = "".join(f"<td class='n' data-count='{k}'>{_n(c[k])}</td>" for k in ("audience", *DECISIONS))
    counts = (
        "<table><tr><th class='n'>audience</th><th class='n'>sent</th><th class='n'>holdout</th>"
        f"<th class='n'>no consent</th><th class='n'>capped</th></tr><tr>{cells}</tr></table>"
    )
    rows = []
    for vid, v in f.variants.items():
        posterior = "<span class='muted'>n/a</span>" if v["posterior_mean"] is None else f"{v['posterior_mean']:.3f}"
        rows.append(
            f"<tr data-variant='{html.escape(vid)}'><td>{html.escape(vid)}</td><td class='n'>{_n(v['sends'])}</td>"
            f"<td>{_share(v['bandit_share'])}</td><td>{_share(v['realised_share'])}</td>"
            f"<td class='n'>{_n(v['closed'])}</td><td class='n'>{_n(v['conversions'])}</td><td class='n'>{posterior}</td></tr>"
        )
    variants = (
        "<table><tr><th>variant</th><th class='n'>sent</th><th>bandit's split</th><th>today's split</th>"
        "<th class='n'>messages closed</th><th class='n'>conversions</th><th class='n'>posterior mean</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    if f.uplift:
        u = f.uplift
        uplift = (
            f"<p><b>Uplift</b> (campaign nba:{html.escape(action.id)}, from {u['assigned_on']}): conversion "
            f"{u['uplift']:+.1%} (between {u['low']:+.1%} and {u['high']:+.1%}), {_n(u['treatment'])} treated "
            f"against {_n(u['control'])} held out.</p>"
        )
    else:
        uplift = f"<p><b>Uplift:</b> not yet known: {html.escape(f.uplift_unknown or '')}.</p>"
    reason = (
        f"<p><b>Why:</b> {html.escape(f.reason)}</p><p class='muted'>(the median customer of today's audience)</p>"
        if f.reason
        else "<p><b>Why:</b> <span class='muted'>no decision today</span></p>"
    )
    offer = action.offer and {
        "code": action.offer.code, "description": action.offer.description,
        "discount_percent": action.offer.discount_percent,
    }  # fmt: skip
    previews = []
    for v in action.variants:
        ctx = {**sample_context(offer), "shop": mailing.shop, "action": {"id": action.id, "channel": action.channel},
               "variant": {"id": v.id}}  # fmt: skip
        ctx["unsubscribe"] = {"url": mailing.unsubscribe(action.channel, customer_pkey="pk_" + "0" * 32)["url"]}
        body = v.template.render(ctx)
        subject = v.subject.render(ctx) if v.subject else None
        previews.append(
            f"<h3>Variant {html.escape(v.id)} <small>(sample customer)</small></h3>"
            + pages.message(action.channel, subject, body, mailing.shop)
        )
    return f"<section class='card' id='{html.escape(action.id)}'>{head}{counts}{variants}{uplift}{reason}{''.join(previews)}</section>"


def render_report(
    day, version: int, actions: list[ActionFigures], catalogue: Catalogue, mailing: Mailing, previews_link: str | None,
    unreachable: list[tuple],
) -> str:  # fmt: skip
    by_id = {a.id: a for a in catalogue.batch_actions}
    totals = {k: sum(f.counts[k] for f in actions) for k in ("audience", *DECISIONS)}
    parts = []
    for name in mailing.uses_defaults:
        parts.append(
            f"<div class='warn'>{name} is at its demo default: set it before sending real email (docs/decisioning.md).</div>"
        )
    summary = ", ".join(f"{_n(totals[k])} {k.replace('_', ' ')}" for k in DECISIONS)
    parts.append(
        f"<div class='card'><b>{_n(totals['audience'])}</b> decisions (customer x channel): {summary}. "
        f"Bandit state v{version}."
        + (f" <a href='{html.escape(previews_link)}'>Today's message previews</a>." if previews_link else "")
        + "</div>"
    )
    overview = "".join(
        f"<tr><td><a href='#{html.escape(f.action_id)}'>{html.escape(pages.title(f.action_id))}</a></td>"
        f"<td>{pages.CHANNEL_NAMES[by_id[f.action_id].channel]}</td>"
        + "".join(f"<td class='n'>{_n(f.counts[k])}</td>" for k in ("audience", *DECISIONS))
        + "</tr>"
        for f in actions
    )
    parts.append(
        "<table><tr><th>action</th><th>channel</th><th class='n'>audience</th><th class='n'>sent</th>"
        "<th class='n'>holdout</th><th class='n'>no consent</th><th class='n'>capped</th></tr>" + overview + "</table>"
    )
    if any(n for _, _, n, _ in unreachable):
        rows = "".join(
            f"<tr><td>{pages.CHANNEL_NAMES.get(ch, ch)}</td><td>{html.escape(why)}</td><td class='n'>{_n(n)}</td>"
            f"<td class='n'>{_n(e)}</td></tr>"
            for ch, why, n, e in unreachable
            if n
        )
        parts.append(
            "<h3>Not reachable (no decision made on the channel)</h3><table><tr><th>channel</th><th>why</th>"
            "<th class='n'>customers</th><th class='n'>of whom an action was eligible</th></tr>" + rows + "</table>"
        )
    parts += [_action_section(by_id[f.action_id], f, mailing) for f in actions]
    realtime = list(catalogue.realtime_actions)
    if realtime:
        parts.append(
            "<p class='muted'>Realtime actions ("
            + ", ".join(html.escape(pages.title(a.id)) for a in realtime)
            + ") are decided per event by the trigger worker (docs/realtime_triggers.md), not in this daily report.</p>"
        )
    return pages.page(f"Campaign report, {day}", "Today's next best actions, per action and variant", "\n".join(parts))


@dataclass
class Written:
    path: Path
    latest: Path
    day: date
    totals: dict[str, int]
    actions: int


def write_report(
    con, catalogue: Catalogue, mailing: Mailing, data_dir: Path, preview_index: Path | None = None
) -> Written:
    """Write today's report (and latest.html, and the figures as <day>.json) from the warehouse."""
    day, actions, version = figures(con, catalogue)
    unreachable = (
        con.execute(
            "select channel, reason, customers, customers_with_an_eligible_action from decisioning.unreachable order by 1"
        ).fetchall()
        if table_exists(con, "decisioning", "unreachable")
        else []
    )
    out_dir = report_dir(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    link = None
    if preview_index is not None and preview_index.is_file():
        link = Path("..", "..", *preview_index.resolve().relative_to(Path(data_dir).resolve()).parts).as_posix()
    text = render_report(day, version, actions, catalogue, mailing, link, unreachable)
    path = out_dir / f"{day}.html"
    path.write_text(text, encoding="utf-8")
    latest = out_dir / f"{LATEST}.html"
    shutil.copyfile(path, latest)
    totals = {k: sum(f.counts[k] for f in actions) for k in ("audience", *DECISIONS)}
    facts = {
        "day": str(day),
        "bandit_state_version": version,
        "totals": totals,
        "actions": {
            f.action_id: {**f.counts, "variants": {v: d["sends"] for v, d in f.variants.items()}} for f in actions
        },
        "report": path.name,
    }
    for name in (f"{day}.json", f"{LATEST}.json"):
        (out_dir / name).write_text(json.dumps(facts, indent=2), encoding="utf-8")
    return Written(path, latest, day, totals, len(actions))


def summary_line(settings) -> str | None:
    """The run summary's line: where the latest campaign report is and what it counts; None before
    the first one."""
    out_dir = report_dir(settings.data_dir)
    facts_file = out_dir / f"{LATEST}.json"
    if not facts_file.is_file():
        return None
    facts = json.loads(facts_file.read_text(encoding="utf-8"))
    t = facts["totals"]
    return (
        f"campaign report for {facts['day']}: {out_dir / (LATEST + '.html')} "
        f"({t['send']:,} sent, {t['holdout']:,} held out, {t['no_consent']:,} without consent, {t['capped']:,} capped)"
    )
