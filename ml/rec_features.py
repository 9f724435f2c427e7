"""What each column of a user or item feature table becomes before the recommender one-hot encodes
it (ml.recommender.feature_space), decided from the data and reported column by column.

- a List column, or text whose values hold the list delimiter ("Action|Comedy"), is multi-hot:
  one feature per value ("genres:Action", "genres:Comedy"), the row's weight split among them;
- a numeric column with more distinct values than buckets is cut into quantile buckets named by
  their range ("price:[2.5, 4.95)"); with fewer it is categorical, one feature per value;
- low-cardinality text (and booleans) stays categorical, one feature per value;
- text with more distinct values than max(max_distinct, max_distinct_share x rows) is refused:
  free text or an identifier would make a feature per row (a title column became 1,664
  one-item features), a second identity feature that shares nothing between rows. The error names
  the table, the column, its distinct count and what to do (drop it, or band it);
- columns the user names in `drop` are left out, and reported as dropped.

Missing values (a null, an empty list) are the feature "unknown", as for any column.

The delimiter is "|" alone by default: ";" and "," occur in ordinary text ("Smith, John",
"salt; pepper", a decimal comma), where splitting would invent values; a table whose lists use
another delimiter names it (TypingOptions.delimiter, `--feature-delimiter`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

CATEGORICAL, LIST, NUMERIC, DROPPED = "categorical", "list", "numeric", "dropped"


@dataclass(frozen=True)
class TypingOptions:
    """How feature columns are typed. Defaults: "|" lists, 5 quantile buckets, and text refused
    above max(50, 50 % of the rows with a value) distinct values: at half the rows a value is
    shared by two rows on average, little more than an identity feature; below 50 values one-hot
    costs nothing and a small table's category (40 products, 40 sub-categories) is not mistaken
    for free text."""

    delimiter: str = "|"
    buckets: int = 5
    max_distinct: int = 50
    max_distinct_share: float = 0.5
    drop: frozenset[str] = frozenset()
    # numeric columns that are codes, not quantities (a manufacturer id): categorical, not bucketed
    categorical: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.delimiter:
            raise ValueError("the list delimiter must not be empty")
        if self.buckets < 2:
            raise ValueError(f"buckets must be >= 2, got {self.buckets}")
        if self.max_distinct < 1 or not 0 < self.max_distinct_share <= 1:
            raise ValueError(
                f"max_distinct must be >= 1 and max_distinct_share in (0, 1], got {self.max_distinct} "
                f"and {self.max_distinct_share}"
            )

    def distinct_limit(self, rows: int) -> int:
        return max(self.max_distinct, int(self.max_distinct_share * rows))


@dataclass(frozen=True)
class ColumnChoice:
    """What one feature column became: its kind, how many features (values or buckets) and, for
    a list, the most values one row has."""

    table: str
    column: str
    kind: str
    values: int = 0
    delimiter: str | None = None
    max_per_row: int = 0
    edges: tuple[float, ...] = ()
    note: str = ""  # why a numeric column is categorical

    def describe(self) -> str:
        if self.kind == DROPPED:
            return "dropped by user"
        if self.kind == LIST:
            source = f"({self.delimiter})" if self.delimiter else ""
            return f"list{source}: {self.values} values, up to {self.max_per_row} per row"
        if self.kind == NUMERIC:
            return f"numeric: {self.values} quantile buckets"
        return f"categorical: {self.values} values" + (f" ({self.note})" if self.note else "")

    def as_dict(self) -> dict:
        out = {"table": self.table, "column": self.column, "kind": self.kind, "features": self.values}
        if self.kind == LIST:
            out.update(delimiter=self.delimiter, max_per_row=self.max_per_row)
        if self.kind == NUMERIC:
            out["bucket_starts"] = list(self.edges)
        out["choice"] = self.describe()
        return out


@dataclass
class TypedFeatures:
    """The key column and the typed feature columns (String, or List of String for multi-hot),
    ready for feature_space, and the choice made for every column of the table."""

    frame: pl.DataFrame
    columns: list[str]
    choices: list[ColumnChoice] = field(default_factory=list)


class FeatureTypeError(ValueError):
    """A feature table holds columns that cannot be features as they are."""


def type_features(
    frame: pl.DataFrame, key: str, table: str, options: TypingOptions | None = None, source: str | None = None
) -> TypedFeatures:
    """Each non-key column of `frame` typed (see the module doc); `table` names the table in the
    report ("users", "items"), `source` (default: `table`) the table or file in errors. Every
    refused column is named in one FeatureTypeError."""
    options = options or TypingOptions()
    typed: dict[str, pl.Series] = {}
    choices: list[ColumnChoice] = []
    refused: list[str] = []
    for column in [c for c in frame.columns if c != key]:
        if column in options.drop:
            choices.append(ColumnChoice(table, column, DROPPED))
            continue
        try:
            typed[column], choice = type_column(frame[column], source or table, options)
        except FeatureTypeError as exc:
            refused.append(str(exc))
            continue
        choices.append(replace(choice, table=table))
    if refused:
        raise FeatureTypeError("\n".join(refused))
    return TypedFeatures(frame.select(key).with_columns(**typed), list(typed), choices)


def type_column(values: pl.Series, table: str, options: TypingOptions) -> tuple[pl.Series, ColumnChoice]:
    column, dtype = values.name, values.dtype
    if isinstance(dtype, pl.List | pl.Array):
        return as_list(values.cast(pl.List(pl.String)), table, None, options)
    note = ""
    if dtype.is_numeric():
        note = "numeric, named categorical"
        if column not in options.categorical:
            present = values.fill_nan(None) if dtype.is_float() else values
            if present.drop_nulls().n_unique() > options.buckets:
                return quantile_buckets(values, table, options.buckets)
            note = f"numeric with at most {options.buckets} distinct values"
    if not (dtype.is_numeric() or dtype in (pl.String, pl.Categorical, pl.Boolean) or isinstance(dtype, pl.Enum)):
        raise FeatureTypeError(
            f"{table}: column {column!r} is of type {dtype}, which cannot be a feature as it is: "
            f"drop it (--drop-feature {column}) or turn it into text bands"
        )
    text = values.cast(pl.String)
    if not dtype.is_numeric() and text.str.contains(options.delimiter, literal=True).any():
        return as_list(text.str.split(options.delimiter), table, options.delimiter, options)
    distinct = text.drop_nulls().n_unique()
    check_cardinality(text, distinct, table, options)
    return text, ColumnChoice(table, column, CATEGORICAL, distinct, note=note)


def as_list(
    values: pl.Series, table: str, delimiter: str | None, options: TypingOptions
) -> tuple[pl.Series, ColumnChoice]:
    """Each row's distinct values, stripped, empty ones left out (an empty list is "unknown")."""
    cleaned = values.list.eval(pl.element().str.strip_chars().filter(pl.element().str.len_chars() > 0)).list.unique(
        maintain_order=True
    )
    tokens = cleaned.explode().drop_nulls()
    distinct = tokens.n_unique()
    check_cardinality(cleaned, distinct, table, options)
    per_row = cleaned.list.len().max() or 0
    return cleaned, ColumnChoice(table, values.name, LIST, distinct, delimiter or None, int(per_row))


def check_cardinality(values: pl.Series, distinct: int, table: str, options: TypingOptions) -> None:
    rows = len(values) - values.null_count()
    limit = options.distinct_limit(rows)
    if distinct > limit:
        raise FeatureTypeError(
            f"{table}: column {values.name!r} has {distinct:,} distinct values in {rows:,} rows with a value "
            f"(the limit is max({options.max_distinct}, {options.max_distinct_share:.0%} of rows) = {limit:,}): "
            "free text or an identifier, which would be a feature per row, not a category. "
            f"Drop it (--drop-feature {values.name}) or group its values into fewer bands"
        )


def quantile_buckets(values: pl.Series, table: str, buckets: int) -> tuple[pl.Series, ColumnChoice]:
    """Each value's quantile bucket, named by its range "[start, next start)" (the last one closed
    at the maximum). A value's bucket is floor(buckets x (values below it) / n), so equal values
    share a bucket and a value that fills several quantiles makes fewer buckets; missing stays
    missing ("unknown")."""
    x = values.cast(pl.Float64).fill_nan(None)
    present = x.drop_nulls().to_numpy()
    ordered = np.sort(present)

    def bucket_of(v: np.ndarray) -> np.ndarray:
        return (buckets * np.searchsorted(ordered, v, side="left")) // len(ordered)

    # buckets rise with the sorted values: a bucket starts at its first sorted value
    kept, first = np.unique(bucket_of(ordered), return_index=True)
    starts = ordered[first]
    dense = np.searchsorted(kept, bucket_of(present))
    ends = [*starts[1:], ordered[-1]]
    labels = [
        f"[{number(lo)}, {number(hi)}{']' if i == len(kept) - 1 else ')'}"
        for i, (lo, hi) in enumerate(zip(starts, ends, strict=True))
    ]
    out = np.full(len(x), None, dtype=object)
    out[~x.is_null().to_numpy()] = np.asarray(labels, dtype=object)[dense]
    named = pl.Series(values.name, out, dtype=pl.String)
    return named, ColumnChoice(table, values.name, NUMERIC, len(kept), edges=tuple(float(s) for s in starts))


def number(x: float) -> str:
    """The shortest text that reads back as `x` (2.5, 4, 0.1)."""
    return np.format_float_positional(x, trim="-")


def report_params(choices: list[ColumnChoice]) -> dict[str, str]:
    """MLflow params: feature.<table>.<column> -> the choice ("list(|): 18 values, up to 6 per row")."""
    return {f"feature.{safe_name(c.table)}.{safe_name(c.column)}": c.describe() for c in choices}


def safe_name(name: str) -> str:
    """A name as an MLflow param key allows it (letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^\w\-. /]", "_", name)


def report_lines(choices: list[ColumnChoice]) -> list[str]:
    return [f"{c.table}.{c.column}: {c.describe()}" for c in choices]
