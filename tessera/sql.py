"""SQL that stays in Python lives in `.sql` files beside its module, read once; identifiers from
code constants are composed only through `ident`; every value is a bound parameter."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def load(anchor: str, name: str) -> str:
    """The text of `sql/<name>.sql` beside the module `anchor` (its `__file__`)."""
    return (Path(anchor).parent / "sql" / f"{name}.sql").read_text()


def ident(*parts: str) -> str:
    """A (schema-)qualified identifier, each part double-quoted (a quote in it doubled):
    `ident("raw", "orders")` is `"raw"."orders"`."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


class Params(dict):
    """The values one statement binds, by name: `bind(value)` stores the value and returns its
    placeholder ($p0, $p1, ...), cast to `sql_type` when given; execute with the dict."""

    def bind(self, value, sql_type: str | None = None) -> str:
        name = f"p{len(self)}"
        self[name] = value
        return f"cast(${name} as {sql_type})" if sql_type else f"${name}"
