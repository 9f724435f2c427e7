"""SQL that stays in Python lives in `.sql` files beside its module, read once; identifiers from
code constants are composed only through `ident`; every value is a bound parameter."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@cache
def load(anchor: str, name: str) -> str:
    """The text of `sql/<name>.sql` beside the module `anchor` (its `__file__`)."""
    return (Path(anchor).parent / "sql" / f"{name}.sql").read_text()


def ident(*parts: str) -> str:
    """A (schema-)qualified identifier, each part double-quoted: `ident("raw", "orders")` is
    `"raw"."orders"`. Refuses a part that is not a plain name, so a quote never needs escaping."""
    for part in parts:
        if not _PLAIN.fullmatch(part):
            raise ValueError(f"not a plain SQL identifier: {part!r}")
    return ".".join(f'"{part}"' for part in parts)
