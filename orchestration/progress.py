"""What `tessera run` prints while the run goes: one line when a step starts and one when it ends,
with the seconds since the run started and the step's own; Dagster's full log of the run goes to a
file (`<data dir>/logs/dagster-<run id>.log`) instead of the console. docs/operations.md, "Reading
a run"."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import dagster as dg

LOG_DIR = "logs"
# the events a progress line is printed for
STEP_EVENTS = ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "STEP_UP_FOR_RETRY", "STEP_SKIPPED")
# run logs kept in <data dir>/logs: the oldest beyond this many are removed when a run starts
KEEP_LOGS = 30


# where a run's dbt steps write dbt's console lines (orchestration/dbt.py): unset (Dagster's UI
# and daemon), stdout, which Dagster keeps as the step's compute log; `tessera run` sets
# dbt_log_path, so dbt's hundreds of lines do not come between its progress lines
DBT_LOG_ENV = "TESSERA_DBT_LOG"


def log_path(data_dir: Path, run_id: str) -> Path:
    return data_dir / LOG_DIR / f"dagster-{run_id}.log"


def dbt_log_path(data_dir: Path, run_id: str) -> Path:
    return data_dir / LOG_DIR / f"dbt-{run_id}.log"


def prune_logs(directory: Path, keep: int = KEEP_LOGS) -> list[Path]:
    """Remove the oldest run logs (Dagster's, dbt's) of `directory` beyond the newest `keep` of
    each; returns those removed."""
    removed = []
    for pattern in ("dagster-*.log", "dbt-*.log"):
        logs = sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in logs[keep:]:
            old.unlink()
        removed += logs[keep:]
    return removed


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def failure_text(event: dg.DagsterEvent) -> str:
    """A failed step's own words: a dg.Failure's description (the gates', orchestration/quality.py),
    else the error's class and message, without Dagster's wrapping and stack trace."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    while error is not None and error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause  # "Error occurred while executing op ..." wraps the user's error
    if error is None:
        return "no error recorded"
    message = error.message.strip()
    if (dbt := dbt_failure_text(message)) is not None:
        return dbt
    return message if message.startswith(error.cls_name) else f"{error.cls_name}: {message}"


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
DBT_ERRORS_HEADING = "Errors parsed from dbt logs:"


def dbt_failure_text(message: str) -> str | None:
    """A failed dbt invocation's own errors, from dagster-dbt's message (which opens with the whole
    dbt command line and a pointer to compute logs a `tessera run` does not keep): the lines dbt
    printed for the failed models and tests, without colour codes, first the summary line. None
    for another error."""
    if DBT_ERRORS_HEADING not in message:
        return None
    errors = [ANSI_ESCAPE.sub("", line).strip() for line in message.split(DBT_ERRORS_HEADING, 1)[1].splitlines()]
    errors = [line for line in errors if line]
    if not errors:
        return None
    failed = [
        line for line in errors if line.startswith(("Failure in ", "Database Error in ", "Compilation Error in "))
    ]
    return "\n".join([f"dbt: {failed[0] if failed else errors[0]}", *errors])


class Progress:
    """An event listener (DagsterInstance.add_event_listener): every event of the run is written to
    the log file; step starts and ends, retries, and warnings logged by a running step are printed."""

    def __init__(self, log_file: TextIO, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.log_file = log_file
        self.out = out if out is not None else sys.stdout  # the stdout of when the run starts
        self.clock = clock
        self.started = clock()
        self.running: dict[str, float] = {}
        self.finished: dict[str, str] = {}  # step -> "done" | "failed"

    def _print(self, now: float, text: str) -> None:
        print(f"[{now - self.started:7.1f} s] {text}", file=self.out, flush=True)

    def __call__(self, entry) -> None:
        self._write(entry)
        event = entry.dagster_event
        step = entry.step_key
        if event is None:
            if step in self.running and entry.level >= logging.WARNING:
                level = logging.getLevelName(entry.level).lower()
                self._print(self.clock(), f"{step}: {level}: {first_line(entry.user_message)}")
            return
        kind = event.event_type_value
        if kind not in STEP_EVENTS:
            return
        now = self.clock()
        if kind == "STEP_START":
            self.running[step] = now
            self._print(now, f"{step} started")
        elif kind == "STEP_SUCCESS":
            self._print(now, f"{step} done in {now - self.running.pop(step, now):.1f} s")
            self.finished[step] = "done"
        elif kind == "STEP_FAILURE":
            seconds = now - self.running.pop(step, now)
            self._print(now, f"{step} FAILED after {seconds:.1f} s: {first_line(failure_text(event))}")
            self.finished[step] = "failed"
        elif kind == "STEP_UP_FOR_RETRY":
            self.running.pop(step, None)
            self._print(now, f"{step} will be retried: {first_line(event.message or '')}")
        elif kind == "STEP_SKIPPED":
            self._print(now, f"{step} skipped")
            self.finished[step] = "skipped"

    def _write(self, entry) -> None:
        when = datetime.fromtimestamp(entry.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")
        event = entry.dagster_event
        kind = event.event_type_value if event is not None else "LOG"
        line = f"{when} {logging.getLevelName(entry.level):<7} {entry.step_key or '-'} {kind}: {entry.message}"
        if event is not None and kind == "STEP_FAILURE":
            line += "\n" + event.step_failure_data.error.to_string()
        self.log_file.write(line.rstrip() + "\n")
        self.log_file.flush()
