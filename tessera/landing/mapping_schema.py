"""The schema of a source mapping file (docs/source_mappings.md is its reference).

A mapping turns one shop's export into landing files of the contract (tessera/landing/contract.py)
and is run as SQL in DuckDB (tessera/landing/mapping.py). It has three parts:

- ``inputs``: the export's files, how to read them, and the columns used, each with its type and
  format (day-first dates, decimal commas, epoch seconds, JSON), its time zone and currency;
- ``steps`` (optional): intermediate tables, built like outputs but not written;
- ``outputs``: one per landing source, each a select from an input or a step: columns as SQL
  expressions, constants or value maps; a row filter; classification rules that leave rows out
  and record them with a reason; one-row-per-key grouping; a list or JSON array exploded into rows.

Every problem is reported with the mapping file, the key's path and its line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from tessera.landing.contract import SOURCES_BY_NAME

# the built-in mappings (`tessera sources list`)
BUILT_IN_DIR = Path(__file__).resolve().parents[2] / "config" / "mappings"
NODE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
COLUMN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TYPES = ("text", "integer", "decimal", "timestamp", "date", "boolean", "json")


class MappingError(ValueError):
    """A mapping file that is not valid, or an export that does not fit its mapping."""


def _check(pattern: re.Pattern, said: str):
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{said}, got {value!r}")
        return value

    return AfterValidator(check)


NodeName = Annotated[str, _check(NODE_NAME, "must be lower_snake_case, starting with a letter")]
ColumnName = Annotated[str, _check(COLUMN_NAME, "must be a lower_snake_case column name")]
Sql = Annotated[
    str, AfterValidator(str.strip), AfterValidator(lambda v: v or (_ for _ in ()).throw(ValueError("is empty")))
]


# a list written as one value without brackets (`files: "*.csv"`, `from: Invoice`) is a list of one
Listed = BeforeValidator(lambda value: [value] if isinstance(value, str) else value)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CsvOptions(Model):
    delimiter: str = ","
    quote: str = '"'
    header: bool = True
    encoding: Literal["utf-8", "utf-16", "latin-1"] = "utf-8"


class InputColumn(Model):
    """One column of an export, read as `type`: `from` names it in the file (the first of several
    names the file has: exports renamed between versions), matched ignoring case and spaces."""

    source: Annotated[list[str], Listed] = Field(alias="from")
    type: Literal["text", "integer", "decimal", "timestamp", "date", "boolean", "json"] = "text"
    # timestamp and date: strptime formats tried in order (none: ISO 8601)
    format: Annotated[list[str], Listed] = []
    # timestamp: a number of seconds, milliseconds or microseconds since 1970 (UTC)
    epoch: Literal["s", "ms", "us"] | None = None
    # decimal and integer: "1.234,56" (a comma before the decimals, points between thousands)
    decimal_comma: bool = False
    # timestamp: the zone of values that carry no offset (overrides the input's)
    timezone: str | None = None
    # boolean: the texts that mean true and false (compared ignoring case)
    true_values: list[str] = ["true", "1", "yes", "y", "t"]
    false_values: list[str] = ["false", "0", "no", "n", "f"]
    # a required column missing from a file stops the mapping; an optional one reads as empty
    required: bool = True

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"from": [value]} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fits_type(self) -> InputColumn:
        if not self.source:
            raise ValueError("'from' names no column")
        if self.format and self.type not in ("timestamp", "date"):
            raise ValueError(f"'format' applies to timestamp and date columns, not {self.type}")
        if self.epoch and self.type != "timestamp":
            raise ValueError("'epoch' applies to timestamp columns")
        if self.epoch and self.format:
            raise ValueError("a column is read either with 'epoch' or with 'format', not both")
        zoned = [("%z" in f or "%Z" in f) for f in self.format]
        if any(zoned) and not all(zoned):
            raise ValueError("formats either all read an offset (%z) or none does: split the column")
        if self.decimal_comma and self.type not in ("decimal", "integer"):
            raise ValueError("'decimal_comma' applies to decimal and integer columns")
        return self


class Input(Model):
    """Files of the export: `files` is a glob (or a list of globs) under the folder given to the
    mapping, or the one file given to it. With `single_file`, more than one match is an error
    (e.g. a full export and its sample side by side)."""

    files: Annotated[list[str], Listed]
    single_file: bool = False
    format: Literal["csv", "parquet", "jsonl"] | None = None
    csv: CsvOptions = CsvOptions()
    # the zone of timestamps without an offset; required when a timestamp column is read from text
    # or a timestamp without zone (epoch values are UTC by definition)
    timezone: str | None = None
    # the ISO 4217 code of the amounts: fills an output's `currency` column when it maps none
    currency: Annotated[str, _check(re.compile(r"^[A-Z]{3}$"), "must be an ISO 4217 code")] | None = None
    columns: dict[ColumnName, InputColumn]

    @model_validator(mode="after")
    def _zone_declared(self) -> Input:
        for name, column in self.columns.items():
            offset_in_format = bool(column.format) and all("%z" in f or "%Z" in f for f in column.format)
            if column.type == "timestamp" and not (
                column.epoch or offset_in_format or column.timezone or self.timezone
            ):
                raise ValueError(
                    f"column {name!r} is a timestamp: declare the zone of values without an offset "
                    "('timezone' on the input or the column, e.g. Europe/London or UTC)"
                )
        return self


class ValueMap(Model):
    """An output column whose value is looked up: `expr` (SQL) gives the delivered value, `map`
    turns it into the contract's (compared as text, ignoring case and surrounding spaces);
    a value not in the map is `other` when given, else delivered as it came and reported."""

    expr: Sql
    map: dict[str, str | None]
    other: str | None = None


class Constant(Model):
    value: str | int | float | bool | None


class Rule(Model):
    """Rows for which `when` (SQL) holds are left out of the output and recorded with `reason`."""

    name: NodeName
    when: Sql
    reason: Sql


class Check(Model):
    """A value the mapping has no rule for: when `fail_when` (SQL) holds on any row, the mapping
    stops before writing anything, naming the file, row, `column` and its value, and `problem`."""

    column: ColumnName
    fail_when: Sql
    problem: str


OutputColumn = Sql | ValueMap | Constant


class Join(Model):
    """Columns of another input or earlier step, matched on equal `using` columns (a left join
    keeps every row; an inner join only the rows that match)."""

    node: NodeName = Field(alias="with")
    using: Annotated[list[ColumnName], Listed]
    how: Literal["left", "inner"] = "left"


class Node(Model):
    # an input or an earlier step; several: their rows one after the other, columns matched by name
    source: Annotated[list[NodeName], Listed] = Field(alias="from")
    join: list[Join] = []
    checks: list[Check] = []
    where: Sql | None = None
    # name -> SQL giving a list or a JSON array: one row per element, the element available as
    # `name` and its position (from 1) as `name_index`
    explode: dict[ColumnName, Sql] = {}
    # an empty or missing list still gives its row once, the element NULL (otherwise it gives none)
    keep_empty: bool = False
    classify: list[Rule] = []
    # output columns whose values make a row: the other columns are aggregates (min, max, ...)
    group_by: list[ColumnName] = []
    columns: dict[ColumnName, OutputColumn]
    # the ISO 4217 code for a `currency` column this output does not map (overrides the input's)
    currency: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _column_forms(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("columns"), dict):
            columns = {}
            for name, spec in value["columns"].items():
                if isinstance(spec, dict) and "value" in spec and len(spec) == 1:
                    spec = Constant(value=spec["value"])
                elif isinstance(spec, dict) and "map" in spec:
                    spec = ValueMap.model_validate(spec)
                elif isinstance(spec, int | float | bool) or spec is None:
                    raise ValueError(
                        f"column {name!r}: a constant is written {{value: {spec!r}}}; a bare value is read as SQL"
                    )
                columns[name] = spec
            value = {**value, "columns": columns}
        return value

    @model_validator(mode="after")
    def _groups_name_columns(self) -> Node:
        unknown = [g for g in self.group_by if g not in self.columns]
        if unknown:
            raise ValueError(f"group_by names {unknown}, which are not columns of this output")
        if len(self.explode) > 1:
            raise ValueError("explode takes one list per output (chain steps to explode more)")
        return self


class Mapping(Model):
    name: NodeName
    description: str
    inputs: dict[NodeName, Input]
    steps: dict[NodeName, Node] = {}
    outputs: dict[NodeName, Node]
    _file: Path = PrivateAttr(default=Path("(mapping)"))
    _lines: dict = PrivateAttr(default_factory=dict)

    def at(self, *key: str) -> str:
        """`<file>:<line>: <key path>` of a key of the mapping, for messages."""
        found = next((key[:n] for n in range(len(key), -1, -1) if key[:n] in self._lines), ())
        return f"{self._file}:{self._lines.get(found, 1)}: {'.'.join(key)}"

    @model_validator(mode="after")
    def _graph(self) -> Mapping:
        for name in self.outputs:
            if name not in SOURCES_BY_NAME:
                raise ValueError(
                    f"output {name!r} is not a landing source; the contract has {', '.join(SOURCES_BY_NAME)}"
                )
        clash = set(self.inputs) & set(self.steps)
        if clash:
            raise ValueError(f"names used by an input and a step: {sorted(clash)}")
        known = set(self.inputs)
        for kind, nodes in (("steps", self.steps), ("outputs", self.outputs)):
            for name, node in nodes.items():
                for used in (*node.source, *(j.node for j in node.join)):
                    if used not in known:
                        raise ValueError(
                            f"{kind}.{name}: {used!r} names no input or earlier step (known: {', '.join(sorted(known))})"
                        )
                if kind == "steps":
                    known.add(name)
        for name, node in self.outputs.items():
            contract = SOURCES_BY_NAME[name]
            extra = [c for c in node.columns if c not in contract.column_names]
            if extra:
                raise ValueError(
                    f"outputs.{name}: columns {extra} are not in the contract's {name} "
                    f"({', '.join(contract.column_names)})"
                )
            missing = [c.name for c in contract.columns if c.required and c.name not in node.columns]
            if missing:
                raise ValueError(f"outputs.{name}: the contract requires columns {missing}")
        return self


# --- reading a mapping file with the line of every key -----------------------------------------


def _lines(node: yaml.Node, path: tuple = (), into: dict | None = None) -> dict[tuple, int]:
    """The 1-based line of every key path in a composed YAML document."""
    into = {} if into is None else into
    into.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*path, key.value)
            into[here] = key.start_mark.line + 1
            _lines(value, here, into)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), into)
    return into


_ALIASES = {"source": "from"}
_UNION_TAGS = {"str", "ValueMap", "Constant", "function-after[<lambda>(), function-after[strip(), str]]"}


def _key_path(loc: tuple) -> tuple:
    return tuple(_ALIASES.get(p, p) for p in loc if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p)))


def _where(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(top level)"


def mapping_path(name_or_path: str | Path) -> Path:
    """A built-in mapping's file (`online_retail`) or the path given."""
    text = str(name_or_path)
    built_in = BUILT_IN_DIR / f"{text}.yml"
    if "/" not in text and not text.endswith((".yml", ".yaml")) and built_in.is_file():
        return built_in
    path = Path(name_or_path)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in BUILT_IN_DIR.glob("*.yml")))
        raise MappingError(f"{text}: neither a mapping file nor a built-in mapping ({known})")
    return path


def load_mapping(path: Path | str) -> Mapping:
    """The mapping in the YAML file at `path`, or a MappingError naming every problem with its key
    and line."""
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"{path}: no such mapping file")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        lines = _lines(yaml.compose(text)) if data is not None else {}
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise MappingError(f"{path}: a mapping file is a YAML mapping with name, description, inputs and outputs")
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = _key_path(error["loc"])
            found = next((key[:n] for n in range(len(key), -1, -1) if key[:n] in lines), ())
            line = lines.get(found, 1)
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "is required"
            elif error["type"] == "extra_forbidden":
                message = "unknown key"
            problems.append(f"{path}:{line}: {_where(key)}: {message}")
        raise MappingError("\n".join(problems)) from None
    mapping._file, mapping._lines = path, lines
    return mapping
