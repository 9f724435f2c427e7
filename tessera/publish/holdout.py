"""Holdout groups: which members of a published audience a campaign leaves out (control), so that
what the campaign changes can be measured against them.

A customer's group in a campaign is a pure function of the campaign, the customer key and the
share: md5("<campaign>:<customer key>") picks one of 10,000 buckets, and the buckets below
share x 10,000 are control. So:

- the same customer in the same campaign is in the same group on every run and every machine
  (md5, not DuckDB's internal `hash()`, which may change between versions);
- groups are independent between campaigns (the campaign is hashed in), so one set of customers
  is not always the one left out;
- the control share is the configured one up to sampling noise (binomial: +-0.06 % at 1,000,000
  members, +-0.7 % at 2,000; tests/test_holdout.py measures it).

`TESSERA_HOLDOUT_SHARE` (default 0.10) sets the share.
"""

from __future__ import annotations

BUCKETS = 10_000


def holdout_group_sql(campaign: str, customer_key: str, share: float) -> str:
    """A SQL expression: 'control' or 'treatment' for `customer_key` in `campaign` (both SQL
    expressions), NULL when the campaign is NULL (the customer is not in that audience)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"a holdout share is in [0, 1), got {share}")
    threshold = round(share * BUCKETS)
    bucket = f"md5_number({campaign} || ':' || {customer_key}) % {BUCKETS}"
    return (
        f"case when {campaign} is null then null "
        f"when {bucket} < {threshold} then 'control' else 'treatment' end"
    )
