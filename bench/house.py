"""How the house is kept (issue 34): figures read from the source tree, no code is run.

    .venv/bin/python bench/house.py            # this checkout
    .venv/bin/python bench/house.py ../other   # another checkout, to compare

- lines in `orchestration/`, and the longest bodies of Dagster assets and checks (the decorated
  functions; docstrings left out): an asset should be a short shell around a library call;
- lines of SQL in Python strings (non-docstring string literals and f-strings in `tessera/`,
  `orchestration/` and `ml/` that hold a SQL statement), per file, and lines in `.sql` files beside
  the libraries: SQL that builds tables belongs in dbt, SQL Python must run in `.sql` files;
- functions whose body is over 50 lines, and the deepest nesting of blocks in one function.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

PACKAGES = ("tessera", "orchestration", "ml")
BLOCKS = (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.AsyncFor, ast.AsyncWith, ast.Match)
SQL_START = re.compile(
    r"^\s*(--[^\n]*\n\s*)*(select|insert|create|delete|update|alter|drop|with|copy|attach|describe|pragma|from)\b",
    re.I,
)
SQL_ANYWHERE = re.compile(
    r"\b(select\s.+\sfrom|insert into|create (or replace )?(temp )?(table|view|macro|schema|sequence)|delete from"
    r"|alter table|drop table|left join|inner join|group by|order by)\b",
    re.I | re.S,
)


def python_files(root: Path):
    for package in PACKAGES:
        yield from sorted((root / package).rglob("*.py"))


def docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def is_sql(text: str) -> bool:
    return bool(SQL_ANYWHERE.search(text) or (SQL_START.match(text) and len(text) > 12))


def sql_lines(tree: ast.AST) -> int:
    skip, lines = docstrings(tree), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
            text = "".join(p for p in parts if isinstance(p, str))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
        else:
            continue
        if is_sql(text):
            lines.update(range(node.lineno, node.end_lineno + 1))
    return len(lines)


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = function.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1


def depth(node: ast.AST, level: int = 0) -> int:
    return max([level] + [depth(child, level + isinstance(child, BLOCKS)) for child in ast.iter_child_nodes(node)])


def is_dagster_definition(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    names = [ast.unparse(d).split("(")[0] for d in function.decorator_list]
    return any(n.endswith(("asset", "asset_check", "multi_asset", "sensor", "schedule")) for n in names)


def measure(root: Path) -> dict:
    functions, assets, sql = [], [], {}
    for path in python_files(root):
        name = str(path.relative_to(root))
        tree = ast.parse(path.read_text())
        if n := sql_lines(tree):
            sql[name] = n
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                where = f"{name}:{node.name}"
                functions.append((body_lines(node), depth(node), where))
                if name.startswith("orchestration/") and is_dagster_definition(node):
                    assets.append((body_lines(node), where))
    sql_files = sorted((root / "tessera").rglob("*.sql"))
    return {
        "orchestration_lines": sum(len(p.read_text().splitlines()) for p in (root / "orchestration").glob("*.py")),
        "longest_asset_bodies": sorted(assets, reverse=True)[:5],
        "sql_lines_in_python": sql,
        "sql_lines_in_sql_files": sum(len(p.read_text().splitlines()) for p in sql_files),
        "functions_over_50_lines": sorted(((n, w) for n, _, w in functions if n > 50), reverse=True),
        "deepest_nesting": max(((d, w) for _, d, w in functions), default=(0, "")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--top", type=int, default=10, help="rows per list")
    args = parser.parse_args()
    m = measure(args.root)
    sql = m["sql_lines_in_python"]
    print(f"orchestration/: {m['orchestration_lines']} lines")
    print("longest asset/check/sensor bodies: " + ", ".join(f"{w} {n}" for n, w in m["longest_asset_bodies"]))
    print(
        f"SQL lines in Python strings: {sum(sql.values())} in {len(sql)} files; in .sql files: {m['sql_lines_in_sql_files']}"
    )
    for name, n in sorted(sql.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {n:5d} {name}")
    over = m["functions_over_50_lines"]
    print(
        f"functions over 50 lines: {len(over)}; deepest nesting {m['deepest_nesting'][0]} ({m['deepest_nesting'][1]})"
    )
    for n, where in over[: args.top]:
        print(f"  {n:5d} {where}")


if __name__ == "__main__":
    main()
