"""Configuration of the matcher: which input column holds which attribute, and the thresholds.

A mapping file (YAML) looks like::

    record_id: rec_id
    columns:            # the person attributes tessera knows; any may be absent
      given_name: given_name
      surname: surname
      address: [street_number, address_1, address_2]   # several columns are joined with spaces
      city: suburb
      postcode: postcode
      state: state
      birth_date: date_of_birth
      phone: phone_number
      email: email
      national_id: soc_sec_id
    other_columns:      # any other column, compared by its kind (optional)
      occupation: category    # exact (frequency-adjusted) / close spelling / different
      site_name: name         # a name: exact / Jaro-Winkler levels / different
      notes: text             # free text such as an address
      tax_number: code        # an identifier: exact / one edit / two edits / different
      registered_on: date     # a date: exact / one typo / day-month swap / within a month, year, 10 years
    extra_identifiers: [loyalty_card]   # more identifiers that link deterministically, optional
    thresholds:
      match_probability: 0.5            # optional overrides of IdentityConfig fields
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

ATTRIBUTES = (
    "given_name",
    "surname",
    "address",
    "city",
    "postcode",
    "state",
    "birth_date",
    "phone",
    "email",
    "national_id",
)
# How each known attribute is standardised, blocked and compared (tessera/identity/model.py).
ATTRIBUTE_KINDS = {
    "given_name": "person_name",
    "surname": "person_name",
    "address": "text",
    "city": "category",
    "postcode": "code",
    "state": "category",
    "birth_date": "date",
    "phone": "code",
    "email": "email",
    "national_id": "code",
}
# Kinds a mapping may give an `other_columns` entry.
OTHER_KINDS = ("name", "text", "category", "code", "date")
# Exact-match identifiers that link records deterministically (when few records share the value).
STRONG_IDENTIFIERS = ("email", "phone", "national_id")

# Two-attribute blocking keys, beside the single-attribute ones: they find the pairs of a value
# too common to block on alone (a frequent surname at a million records).
DEFAULT_BLOCKING_RULES: tuple[tuple[str, ...], ...] = (
    ("surname", "birth_date"),
    ("given_name", "birth_date"),
    ("surname", "postcode"),
    ("given_name", "postcode"),
    ("given_name", "surname"),
    ("birth_date", "postcode"),
    # a household: the street address within its postcode (a common "1 park avenue" is rare there)
    ("address", "postcode"),
)
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .-]*$")


@dataclass(frozen=True)
class IdentityConfig:
    record_id: str = "record_id"
    columns: dict[str, list[str]] = field(default_factory=dict)
    # input column -> kind (OTHER_KINDS), compared beside the known attributes
    other_columns: dict[str, str] = field(default_factory=dict)
    extra_identifiers: tuple[str, ...] = ()
    blocking_rules: tuple[tuple[str, ...], ...] = DEFAULT_BLOCKING_RULES
    # A pair whose posterior match probability reaches this is a probabilistic link. The prior is
    # estimated from the data (the expected number of matching pairs), so the probability is
    # calibrated; 0.95 (Splink's documented clustering threshold) measured best across the public
    # benchmarks: lower thresholds let a few false links chain people into large groups.
    match_probability: float = 0.95
    # Two records whose evidence is this strongly against a match (log2 Bayes factor, prior
    # excluded) are never put in one cluster through other links: a graded veto, so a one-character
    # typo in a birth date or an id weighs little and two different people weigh a lot.
    cannot_link_weight: float = -6.0
    # A linked group holding a cannot-link is re-clustered by average linkage: two parts stay
    # together while the mean weight of the pairs between them reaches this.
    min_group_weight: float = 0.0
    # Pairs inside a linked group of up to this many records that blocking never compared are
    # scored too, so the graded veto sees them (larger groups are left as linked, and counted).
    max_group_to_check: int = 1000
    # What a shared identifier that links deterministically adds to its pair's weight: two records
    # under one login id or loyalty card stay together unless their other attributes are strong
    # evidence against (a household's shared email between two different people).
    identifier_weight: float = 10.0
    # An identifier value held by at most this many records links them deterministically; a value
    # shared more widely (a household phone, a placeholder email) is still compared, as evidence
    # weighed by how common it is, but links nothing on its own.
    max_records_per_identifier: int = 4
    # A declared identifier (a marketplace's person id, a login id) groups a person's records: a
    # buyer's many order profiles. A value held by more records than this links nothing and is
    # counted (overshared_declared_identifier_values). TESSERA_IDENTITY_MAX_CLUSTER_SIZE's default:
    # a larger group would fail that blocking check, so raise the two together.
    max_records_per_declared_identifier: int = 10
    # Blocking keys held by more records than this are skipped (and counted), so one common value
    # cannot explode the pairs; two-attribute keys still find those records' pairs.
    max_block_size: int = 200
    # The candidate pairs may number at most this many per record: blocks are kept smallest first
    # until they fit (blocking.block_size_cap), so scoring time grows linearly with the records.
    # None: no budget, every block up to max_block_size.
    max_pairs_per_record: float | None = 30.0
    # Fewer records than this give no sound estimate of how often attributes agree by chance: such
    # a table gets deterministic links only, and says so in its stats.
    min_records_to_train: int = 50
    # A run with an earlier run's state reuses its model and pair scores, comparing only new and
    # changed records, unless the record count moved by more than this share since the model was
    # trained: then it trains again and scores every pair (a shop that doubled is not the shop the
    # model learned).
    retrain_growth: float = 0.2
    # Random record pairs sampled to estimate u-probabilities, and the most pairs each
    # expectation-maximisation session reads (Splink samples records to stay near it: 1M pairs
    # per session cost 10 s at 1M records, and 300k gave the same clusters on every benchmark).
    # The u sample is 100 pairs per record within [100k, u_max_pairs]: on a 1,000-record file 100k
    # pairs (a fifth of all) scored as well as 300k and took half a second less, a quarter of the
    # run; at 2,218 demo records 100k and 150k cost precision (1.000 -> 0.985), 222k did not.
    u_max_pairs: int = 300_000
    em_max_pairs: int = 300_000
    seed: int = 42

    def attributes(self) -> list[str]:
        return [a for a in ATTRIBUTES if a in self.columns]

    def with_overrides(self, **overrides) -> IdentityConfig:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown identity threshold(s): {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **overrides)


def load_mapping(path: Path | str) -> IdentityConfig:
    """The mapping in `path`; every mistake is a ValueError naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: mapping file not found")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: the mapping must be a YAML mapping with record_id and columns")
    known_keys = {"record_id", "columns", "other_columns", "extra_identifiers", "blocking_rules", "thresholds"}
    unknown_keys = set(spec) - known_keys
    if unknown_keys:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown_keys)}; known: {sorted(known_keys)}")
    if "record_id" not in spec:
        raise ValueError(f"{path}: the mapping must name the record id column under 'record_id'")
    columns = spec.get("columns") or {}
    unknown = set(columns) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"{path}: columns: unknown attribute(s) {sorted(unknown)}; known: {list(ATTRIBUTES)}")
    normalised = {k: ([v] if isinstance(v, str) else list(v)) for k, v in columns.items() if v}
    other = spec.get("other_columns") or {}
    if not isinstance(other, dict):
        raise ValueError(f"{path}: other_columns must map a column to a kind ({', '.join(OTHER_KINDS)})")
    for column, kind in other.items():
        if kind not in OTHER_KINDS:
            raise ValueError(f"{path}: other_columns.{column}: unknown kind {kind!r}; known: {list(OTHER_KINDS)}")
        if not _COLUMN_NAME.match(str(column)):
            raise ValueError(f"{path}: other_columns.{column}: a column name of letters, digits, spaces, _ . -")
    config = IdentityConfig(
        record_id=spec["record_id"],
        columns=normalised,
        other_columns={str(k): v for k, v in other.items()},
        extra_identifiers=tuple(spec.get("extra_identifiers") or ()),
    )
    rules = spec.get("blocking_rules")
    if rules:
        names = set(ATTRIBUTES) | set(config.other_columns)
        for rule in rules:
            bad = [a for a in ([rule] if isinstance(rule, str) else rule) if a not in names]
            if bad:
                raise ValueError(f"{path}: blocking_rules: unknown attribute(s) {bad}; known: {sorted(names)}")
        config = replace(config, blocking_rules=tuple(tuple([r] if isinstance(r, str) else r) for r in rules))
    thresholds = spec.get("thresholds") or {}
    try:
        return config.with_overrides(**thresholds)
    except ValueError as exc:
        raise ValueError(f"{path}: thresholds: {exc}") from exc
