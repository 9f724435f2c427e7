"""Which columns hold personal data: the one rule every place that shows table values outside the
warehouse applies (Dagster previews and check metadata, Great Expectations Data Docs).

The Dagster event log and Data Docs are append-only records that the erasure does not rewrite, so
a value of these columns must never be written there: previews mask them, check metadata and Data
Docs carry no sample of them (docs/privacy.md).

A column is personal when its name
1. is one of PERSONAL_COLUMNS: the landing contract's columns that identify or describe a person
   (names, email, phone, birth date, gender, street address, city, postcode, loyalty card, the
   CRM id, the cookie id, a declared identifier's value) and every column the erasure matches a person by (tessera/privacy/erasure.py:
   customer_key, customer_pkey, the identity graph's record and node columns, order and receipt
   ids);
2. or is derived from one: one of PERSONAL_PARTS appears in it as whole `_`-separated words,
   e.g. first_name_key, last_name_source (it holds "crm:<CRM id>"), source_customer_id,
   email_domain. Not derived in this sense: a flag (a BOOLEAN column, when the caller knows the
   type) or an aggregate named so (AGGREGATE_SUFFIXES: cookie_count, email_open_rate), which
   cannot carry an identifier. Otherwise over-masking is the safe failure: a column masked
   without need costs a look at the table in DuckDB; a value shown is kept by Dagster for good;
3. or names where a golden-record attribute came from (`<attribute>_source`, PROVENANCE_SUFFIX):
   its values are "<source>:<record id>", e.g. "crm:C0000008", a record id of the person;
4. or is free text that may quote a whole delivered record (FREE_TEXT_PARTS: raw_content and its
   hex, merge evidence, message subjects and bodies);
5. or a caller says so (dbt columns marked `meta: {pii: true}`, passed as `extra`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# rule 1: as the contract and the erasure name them
PERSONAL_COLUMNS = frozenset(
    {
        # describe a person (tessera/landing/contract.py, customers and store receipts)
        "first_name", "last_name", "given_name", "family_name", "full_name", "middle_name", "surname",
        "email", "email_address", "phone", "phone_e164", "mobile", "birth_date", "date_of_birth", "gender",
        "address", "street", "city", "postcode", "zip", "zip_code", "loyalty_card", "card_number",
        "ip_address", "latitude", "longitude", "user_agent", "device_id",
        # identify a person: what the erasure matches rows by (tessera/privacy/erasure.py)
        "customer_id", "other_customer_id", "source_customer_id", "anchor_customer_id", "customer_key",
        "customer_pkey", "anonymous_id", "order_id", "receipt_id", "record_id", "record_l", "record_r",
        "node_value", "node_key", "request_id",
        # a shop's declared person identifiers (contract source identifiers)
        "id_value",
    }
)  # fmt: skip
# rule 2: a column whose name holds one of these as whole words is derived from a personal one
PERSONAL_PARTS = (
    "first_name", "last_name", "given_name", "family_name", "full_name", "middle_name", "surname", "name_key",
    "email", "phone", "birth", "dob", "gender", "address", "street", "city", "postcode", "zip",
    "card", "cookie", "ip", "crm", "customer_id", "customer_key", "customer_pkey", "anonymous_id",
    "order_id", "receipt_id", "record_id", "node_value", "latitude", "longitude",
)  # fmt: skip
# rule 2 does not make these personal: counts and shares of something personal
AGGREGATE_SUFFIXES = ("_count", "_rate", "_share", "_percent", "_ratio")
# rule 3: the golden record's provenance columns
PROVENANCE_SUFFIX = "_source"
# rule 4: free text, never shown at all
FREE_TEXT_PARTS = ("raw_content", "raw_line", "evidence", "body", "subject", "comment", "notes")

_PERSONAL = re.compile(r"(?:^|_)(?:" + "|".join(map(re.escape, PERSONAL_PARTS)) + r")(?:_|$)")
_FREE_TEXT = re.compile(r"(?:^|_)(?:" + "|".join(map(re.escape, FREE_TEXT_PARTS)) + r")(?:_|$)")


def is_free_text(column: str) -> bool:
    """A free-text column that may quote a whole delivered record (rule 4)."""
    return bool(_FREE_TEXT.search(column.lower()))


def is_personal(column: str, extra: Iterable[str] = (), dtype: str | None = None) -> bool:
    """Whether values of `column` may identify or describe a person (rules 1 to 5); `dtype`, the
    column's DuckDB type if known."""
    name = column.lower()
    derived = (
        bool(_PERSONAL.search(name)) and not name.endswith(AGGREGATE_SUFFIXES) and (dtype or "").upper() != "BOOLEAN"
    )
    return (
        name in PERSONAL_COLUMNS
        or derived
        or name.endswith(PROVENANCE_SUFFIX)
        or is_free_text(name)
        or column in set(extra)
    )
