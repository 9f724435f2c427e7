"""Configuration of the matcher: which input column holds which attribute, and the thresholds.

A mapping file (YAML) looks like::

    record_id: rec_id
    columns:            # any of these may be absent
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
    extra_identifiers: [loyalty_card]   # more exact-match identifiers, optional
    thresholds:
      match_weight: 8.0                 # optional overrides of IdentityConfig fields
"""

from __future__ import annotations

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
# Exact-match identifiers that link records deterministically.
STRONG_IDENTIFIERS = ("email", "phone", "national_id")
# Attributes the probabilistic model compares.
FUZZY_ATTRIBUTES = ("given_name", "surname", "birth_date", "postcode", "address", "city", "state")

DEFAULT_BLOCKING_RULES: tuple[tuple[str, ...], ...] = (
    ("surname", "birth_date"),
    ("given_name", "birth_date"),
    ("surname", "postcode"),
    ("given_name", "postcode"),
    ("given_name", "surname"),
    ("birth_date", "postcode"),
)


@dataclass(frozen=True)
class IdentityConfig:
    record_id: str = "record_id"
    columns: dict[str, list[str]] = field(default_factory=dict)
    extra_identifiers: tuple[str, ...] = ()
    blocking_rules: tuple[tuple[str, ...], ...] = DEFAULT_BLOCKING_RULES
    # A pair whose summed log2 Bayes factor reaches this is a fuzzy match.
    match_weight: float = 8.0
    # Identifier values shared by more records than this are placeholders or households: not linked.
    max_records_per_identifier: int = 4
    # A declared identifier (a marketplace's person id, a login id) groups a person's records: a
    # buyer's many order profiles. A value held by more records than this links nothing and is
    # counted (overshared_declared_identifier_values). TESSERA_IDENTITY_MAX_CLUSTER_SIZE's default:
    # a larger group would fail that blocking check, so raise the two together.
    max_records_per_declared_identifier: int = 10
    # Blocks larger than this are skipped (and counted), so one common value cannot explode the pairs.
    max_block_size: int = 200
    # Attributes on which two records may not disagree inside one cluster.
    conflict_attributes: tuple[str, ...] = ("birth_date", "email", "national_id")
    # Random record pairs sampled to estimate u-probabilities.
    u_sample_records: int = 2000
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
    spec = yaml.safe_load(Path(path).read_text()) or {}
    if "record_id" not in spec:
        raise ValueError(f"{path}: the mapping must name the record id column under 'record_id'")
    columns = spec.get("columns") or {}
    unknown = set(columns) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"{path}: unknown attribute(s) {sorted(unknown)}; known: {list(ATTRIBUTES)}")
    normalised = {k: ([v] if isinstance(v, str) else list(v)) for k, v in columns.items() if v}
    config = IdentityConfig(
        record_id=spec["record_id"],
        columns=normalised,
        extra_identifiers=tuple(spec.get("extra_identifiers") or ()),
    )
    rules = spec.get("blocking_rules")
    if rules:
        config = replace(config, blocking_rules=tuple(tuple(r) for r in rules))
    thresholds = spec.get("thresholds") or {}
    if "conflict_attributes" in thresholds:
        thresholds["conflict_attributes"] = tuple(thresholds["conflict_attributes"])
    return config.with_overrides(**thresholds)
