"""Seconds per phase of a long step, for its metadata (bench/scale.py reads them)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Phases:
    """`with phases("fit"): ...` adds the block's wall seconds to `phases.seconds["fit"]`; a
    phase entered twice accumulates. A block that raises is still timed, and the error goes on."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 2)
