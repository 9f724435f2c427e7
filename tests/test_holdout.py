"""Holdout groups (tessera/publish/holdout.py): the control share is the configured one, a customer's
group is stable across runs and independent between campaigns, and the published segments carry
the groups."""

from __future__ import annotations

import duckdb
import pytest

from tessera.publish.holdout import holdout_group_sql
from tests.conftest import with_pkeys

# 250,000 customer keys: a share's sampling error is then at most 0.0009 (0.25: sqrt(0.25 * 0.75 / n)),
# under a fifth of the half point allowed, and the joint 1 % of two campaigns is known to 0.0002
# (its band is +-0.002); a million keys gave the same verdicts at four times the time
KEYS = "(select 'C' || lpad(cast(range as varchar), 7, '0') as k from range(250000))"


SHARES = (0.10, 0.05, 0.25)


def _control_shares(con, campaign: str) -> tuple[float, ...]:
    """The control share of each of SHARES in one scan of the keys (the md5 of a key is
    computed once for all three: DuckDB shares the common expression)."""
    columns = ", ".join(
        f"avg(case when {holdout_group_sql(f'{chr(39)}{campaign}{chr(39)}', 'k', share)} = 'control' then 1.0 else 0 end)"
        for share in SHARES
    )
    return con.execute(f"select {columns} from {KEYS}").fetchone()


def test_the_control_share_is_the_configured_one_within_half_a_point(con):
    for campaign in ("rfm:Champions", "rfm:At Risk", "rule:cart_abandoners"):
        for share, measured in zip(SHARES, _control_shares(con, campaign), strict=True):
            assert abs(measured - share) <= 0.005, (campaign, share, measured)


def test_a_customers_group_is_stable_and_independent_between_campaigns(con):
    a = holdout_group_sql("'rfm:Champions'", "k", 0.10)
    b = holdout_group_sql("'rfm:Loyal'", "k", 0.10)
    con.execute(f"create table g as select k, {a} as a, {b} as b from {KEYS}")
    # the same expression in a second connection (another "run") gives every customer the same group
    other = duckdb.connect()
    again = other.execute(f"select k, {a} as a from {KEYS} order by k").fetchall()
    assert again == con.execute("select k, a from g order by k").fetchall()
    # independent: control in both campaigns is about 10 % of 10 %, not 10 %
    both = con.execute("select avg(case when a = 'control' and b = 'control' then 1.0 else 0 end) from g").fetchone()[0]
    assert 0.008 <= both <= 0.012


def test_no_campaign_no_group_and_a_share_out_of_range_is_refused(con):
    assert con.execute(f"select {holdout_group_sql('null', chr(39) + 'C1' + chr(39), 0.1)}").fetchone()[0] is None
    for share in (-0.1, 1.0):
        with pytest.raises(ValueError, match="holdout share"):
            holdout_group_sql("'c'", "k", share)


def test_published_segments_carry_each_customers_group(pipeline):
    _, settings = pipeline
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as db:
        with_pkeys(db)
        # the groups are drawn on the internal customer_key; the table carries the pseudonymous key
        rows = db.execute(
            "select customer_pkey, rfm_segment, rule_segment, rfm_holdout_group, rule_holdout_group, holdout_share "
            "from publish.customer_segments order by 1"
        ).fetchall()
        expected = db.execute(
            f"select customer_pkey(c.customer_key), "
            f"{holdout_group_sql(chr(39) + 'rfm:' + chr(39) + ' || s.rfm_segment', 'c.customer_key', 0.1)}, "
            f"{holdout_group_sql(chr(39) + 'rule:' + chr(39) + ' || s.rule_segment', 'c.customer_key', 0.1)} "
            "from publish.customer_segments s join marts.dim_customers c on customer_pkey(c.customer_key) = s.customer_pkey "
            "order by 1"
        ).fetchall()
    assert len(rows) > 100
    assert {r[5] for r in rows} == {0.1}
    assert {r[3] for r in rows} == {"control", "treatment"}
    assert all((r[4] is None) == (r[2] is None) for r in rows)
    assert [(r[0], r[3], r[4]) for r in rows] == expected
    control = sum(r[3] == "control" for r in rows) / len(rows)
    assert 0.05 < control < 0.15  # a few hundred customers: the share holds only roughly
