"""Crash points: where the crash matrix (tests/test_crash.py, bench/crash_matrix.py) kills a run.

`crash_point(name)` does nothing unless the environment variable TESSERA_CRASH_AT names this
point, and then kills its own process with SIGKILL, exactly as the operating system's OOM killer
or a power loss would: no cleanup handler runs. The points sit between the writes whose order the
recovery depends on, where a timed kill would land only by luck. Never set it in production.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "TESSERA_CRASH_AT"
POINTS = (
    "erasure:deleted",  # rows gone from the warehouse, transaction not yet committed
    "erasure:journaled",  # the delete and the journal committed, no file rewritten
    "erasure:first_rewrite",  # one published version rewritten, not yet released
    "erasure:files",  # published versions released, journal not yet closed
    "erasure:compacting",  # the compacted copy written, not yet swapped in
    "release:promoted",  # staged versions moved into place, release.json not yet replaced
)


def crash_point(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}; known: {', '.join(POINTS)}")
    if os.environ.get(VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
