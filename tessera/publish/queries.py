"""The SQL that publishing runs itself, read from tessera/publish/sql/ (the warehouse inputs it
reads are dbt models, dbt_project/models/audiences). Values are never formatted into it: a query
names them as $parameters, bound when it runs (bind)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

SQL_DIR = Path(__file__).parent / "sql"
_PARAMETER = re.compile(r"\$([a-z_][a-z0-9_]*)")


@functools.cache
def load(name: str) -> str:
    """tessera/publish/sql/<name>.sql without its comment lines (they are for readers; a query
    formatted into another must not end inside a comment)."""
    text = (SQL_DIR / f"{name}.sql").read_text()
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip() + "\n"


def statements(name: str) -> tuple[str, ...]:
    """The statements of a script, one by one (no statement of ours holds a ';' in a literal)."""
    return tuple(s.strip() for s in load(name).split(";") if s.strip())


def bind(sql: str, parameters: dict[str, object]) -> dict[str, object]:
    """The parameters `sql` names ($name), for con.execute(sql, bind(sql, parameters)): DuckDB
    refuses parameters a statement does not name."""
    return {name: parameters[name] for name in dict.fromkeys(_PARAMETER.findall(sql))}
