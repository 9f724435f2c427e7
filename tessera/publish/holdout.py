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

`TESSERA_HOLDOUT_SHARE` (default 0.10) sets the share. Publishing calls the macro
holdout_group(campaign, customer_key, threshold) (install) with the threshold bound as a parameter;
holdout_group_sql writes the same expression inline; `group` is the same split in Python, for the
realtime trigger worker (DuckDB's md5_number is the digest read as a little-endian 128-bit number).
"""

from __future__ import annotations

import hashlib

BUCKETS = 10_000
MACRO = "holdout_group"


def threshold(share: float) -> int:
    """The number of buckets in control for a holdout share."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"a holdout share is in [0, 1), got {share}")
    return round(share * BUCKETS)


def _group(campaign: str, customer_key: str, control_buckets: str) -> str:
    bucket = f"md5_number({campaign} || ':' || {customer_key}) % {BUCKETS}"
    return (
        f"case when {campaign} is null then null when {bucket} < {control_buckets} then 'control' else 'treatment' end"
    )


def holdout_group_sql(campaign: str, customer_key: str, share: float) -> str:
    """A SQL expression: 'control' or 'treatment' for `customer_key` in `campaign` (both SQL
    expressions), NULL when the campaign is NULL (the customer is not in that audience)."""
    return _group(campaign, customer_key, str(threshold(share)))


def install(con) -> None:
    """Define the SQL macro holdout_group(campaign, customer_key, threshold) on this connection:
    the group of holdout_group_sql, with threshold(share) passed in (bound, never formatted)."""
    con.execute(
        f"create or replace temp macro {MACRO}(campaign, customer_key, control_buckets) as "
        f"({_group('campaign', 'customer_key', 'control_buckets')})"
    )


def group(campaign: str, customer_key: str, share: float) -> str:
    """'control' or 'treatment': the group holdout_group_sql gives `customer_key` in `campaign`."""
    bucket = int.from_bytes(hashlib.md5(f"{campaign}:{customer_key}".encode()).digest(), "little") % BUCKETS
    return "control" if bucket < threshold(share) else "treatment"
