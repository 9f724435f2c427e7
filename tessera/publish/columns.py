"""What the columns of the tables written outside dbt mean: tessera/publish/columns.yml, one place
for the Dagster UI's column schemas (orchestration/metadata.py), the snapshot manifests
(tessera/publish/snapshots.py) and tests/test_column_docs.py.

The dbt models' columns are described in the dbt YAML (dbt_project/models/**/_*.yml); this file
holds the published tables (publish.*) and the ML outputs (ml.*), keyed by relation
(`schema.table`), each column with its description in the order the table has them.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import yaml

COLUMNS_FILE = Path(__file__).with_name("columns.yml")
RELATION = re.compile(r"^[a-z_]+\.[a-z][a-z0-9_]*$")
COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")


class ColumnDocsError(ValueError):
    """columns.yml is malformed: the message names the file, the table and the column."""


def parse(document: object, source: str = "tessera/publish/columns.yml") -> dict[str, dict[str, str]]:
    """{relation: {column: description}} from the YAML document: a column with no text takes the
    description of the same name under `shared`; every description is non-empty text."""
    if not isinstance(document, dict) or set(document) != {"shared", "tables"}:
        raise ColumnDocsError(f"{source}: expected exactly the keys 'shared' and 'tables'")
    shared, tables = document["shared"], document["tables"]
    if not isinstance(shared, dict) or not isinstance(tables, dict):
        raise ColumnDocsError(f"{source}: 'shared' and 'tables' must be mappings")
    for name, text in shared.items():
        if not isinstance(text, str) or not text.strip():
            raise ColumnDocsError(f"{source}: shared column {name!r}: the description must be non-empty text")
    out: dict[str, dict[str, str]] = {}
    for relation, columns in tables.items():
        if not isinstance(relation, str) or not RELATION.match(relation):
            raise ColumnDocsError(f"{source}: table {relation!r}: expected schema.table in lower case")
        if not isinstance(columns, dict) or not columns:
            raise ColumnDocsError(f"{source}: table {relation!r}: expected a mapping of columns to descriptions")
        described = {}
        for column, text in columns.items():
            if not isinstance(column, str) or not COLUMN.match(column):
                raise ColumnDocsError(f"{source}: table {relation!r}: column {column!r} is not a column name")
            if text is None:
                if column not in shared:
                    raise ColumnDocsError(
                        f"{source}: table {relation!r}: column {column!r} has no description and none under 'shared'"
                    )
                text = shared[column]
            if not isinstance(text, str) or not text.strip():
                raise ColumnDocsError(
                    f"{source}: table {relation!r}: column {column!r}: the description must be non-empty text"
                )
            described[column] = " ".join(text.split())
        out[relation] = described
    return out


@functools.cache
def column_docs() -> dict[str, dict[str, str]]:
    """Every described table of columns.yml: {relation: {column: description}}."""
    try:
        document = yaml.safe_load(COLUMNS_FILE.read_text())
    except yaml.YAMLError as exc:
        raise ColumnDocsError(f"{COLUMNS_FILE}: not valid YAML: {exc}") from exc
    return parse(document, str(COLUMNS_FILE))


def descriptions(relation: str) -> dict[str, str]:
    """The column descriptions of `relation` (schema.table); empty for a table not described here."""
    return column_docs().get(relation, {})
