"""Markdown tables: Dagster metadata, the CLI's reports and the benchmarks' print them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tabulate import tabulate


def table(rows: Iterable[Sequence], headers: Sequence[str], align: Sequence[str] | None = None) -> str:
    """`rows` under `headers` as a Markdown pipe table. Cells are printed as given (a formatted
    number keeps its digits); `align` is "left" or "right" per column (right for numbers)."""
    return tabulate(list(rows), headers=list(headers), tablefmt="pipe", disable_numparse=True, colalign=align)
