"""pydantic models of the YAML files people edit (config/segment_rules.yml, config/actions.yml).

One way to validate them: strict types (YAML's own: `"2"` is not a number, `yes` in quotes is
not a boolean), unknown fields refused, and one error format that names the file, the entry, the
field path and the bad value:

    config/actions.yml: action 'cart_push': field 'variants[0].subject': is required on the push channel
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Tag, ValidationError

NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
M = TypeVar("M", bound="ConfigModel")


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FieldProblem(ValueError):
    """A validator's finding about a field below the model it validates; `at` is the path from
    that model (field names and list positions)."""

    def __init__(self, at: tuple[str | int, ...], problem: str):
        super().__init__(problem)
        self.at = at


def checked(test: Callable[[Any], Any], problem: str) -> AfterValidator:
    """Refuses a value for which `test` is false with "<problem>, got <value>"."""

    def check(value):
        if not test(value):
            raise ValueError(f"{problem}, got {value!r}")
        return value

    return AfterValidator(check)


def unique(field: str) -> AfterValidator:
    """Refuses a list of entries in which one repeats the `field` of an earlier one."""

    def check(entries: list) -> list:
        seen = set()
        for i, entry in enumerate(entries):
            value = getattr(entry, field)
            if value in seen:
                raise FieldProblem((i, field), f"is used twice ({value!r})")
            seen.add(value)
        return entries

    return AfterValidator(check)


def whole(low: int, high: int | None = None) -> Any:
    """A whole number from `low` (to `high`)."""
    if high is None:
        said = "must be a positive whole number" if low == 1 else f"must be a whole number of at least {low}"
        return Annotated[int, checked(lambda v: v >= low, said)]
    return Annotated[int, checked(lambda v: low <= v <= high, f"must be a whole number from {low} to {high}")]


Name = Annotated[str, checked(NAME.match, "must be lower_snake_case, starting with a letter, at most 48 characters")]
Text = Annotated[str, AfterValidator(str.strip), checked(bool, "is required")]

# tags of the members of one_of unions: pydantic puts them in an error's path, the messages do not
_TAGS: set[str] = set()


def one_of(*members: type[ConfigModel], keys: tuple[str, ...]) -> Any:
    """A mapping that is one of `members`, chosen by which one of `keys` (the i-th key for the i-th
    member) it holds: `{feature: frequency, op: ">=", value: 2}` is a feature test."""
    tags = {key: member.__name__ for key, member in zip(keys, members, strict=True)}
    _TAGS.update(tags.values())

    def pick(value: Any) -> str | None:
        found = [k for k in keys if k in value] if isinstance(value, dict) else []
        return tags[found[0]] if len(found) == 1 else None

    choices = tuple(Annotated[m, Tag(tags[k])] for k, m in zip(keys, members, strict=True))
    said = f"must be a mapping with exactly one of {', '.join(keys)}"
    return Annotated[Union[choices], Discriminator(pick, custom_error_type="one_of", custom_error_message=said)]  # noqa: UP007


def _where(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _problem(error: dict) -> str:
    kind, value = error["type"], error.get("input")
    said = {
        "missing": "is required",
        "extra_forbidden": "unknown field",
        "int_type": "must be a whole number",
        "bool_type": "must be true or false",
        "string_type": "must be a text",
        "float_type": "must be a number",
        "list_type": "must be a list",
        "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping",
        "dict_type": "must be a mapping",
    }
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind in ("missing", "extra_forbidden"):
        return said[kind]
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']}, got {value!r}"
    return f"{said.get(kind, error['msg'])}, got {value!r}"


def entry_problem(file: Path, kind: str, label: str, field: str, problem: str) -> str:
    return f"{file}: {kind} '{label}': field '{field}': {problem}"


def validate(
    model: type[M],
    data: Any,
    file: Path,
    error: type[ValueError],
    entries: tuple[str, str, str],
    context: dict | None = None,
) -> M:
    """`data` (a parsed YAML file) as `model`, or `error` listing every problem. `entries` says
    where the file's entries are and how a message names one: (list field, label field, kind),
    e.g. ("actions", "id", "action")."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise error("\n".join(_describe(e, data, file, entries) for e in exc.errors())) from None


def _describe(error: dict, data: Any, file: Path, entries: tuple[str, str, str]) -> str:
    list_field, label_field, kind = entries
    path = tuple(p for p in error["loc"] if p not in _TAGS)
    found = error.get("ctx", {}).get("error")
    if isinstance(found, FieldProblem):
        path += found.at
    problem = _problem(error)
    if len(path) >= 2 and path[0] == list_field and isinstance(path[1], int):
        entry = data[list_field][path[1]]
        label = entry.get(label_field) if isinstance(entry, dict) else None
        label = label if isinstance(label, str) else f"#{path[1] + 1}"
        return entry_problem(file, kind, label, _where(path[2:]) or f"({kind})", problem)
    return f"{file}: field '{_where(path)}': {problem}" if path else f"{file}: {problem}"


def read_yaml(path: Path, error: type[ValueError]) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
