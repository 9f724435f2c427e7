"""The realtime outbox: the trigger worker's decisions, journaled in Redis and mirrored to files.

Every decision of the trigger worker (tessera/realtime/triggers.py) is committed once, atomically,
into the Redis stream `tessera:rt:decisions` (the journal; tessera.realtime.triggers commits it in
one Lua script with its idempotency mark and its frequency count). The mirror copies the journal,
in order, into append-only JSON Lines files under the publish directory, one file per UTC day:

    <publish_dir>/campaign_outbox/realtime/<YYYY-MM-DD>.jsonl     messages to send (decision 'send')
    <publish_dir>/next_best_actions/realtime/<YYYY-MM-DD>.jsonl   every decision, with its reason

A message line carries the columns of publish/campaign_outbox first (message_id, customer_pkey,
channel, action_id, variant_id, subject, body_ref, content_type, decided_on), then decided_at
(ISO 8601, UTC), trigger, reason, body (the rendered body, whose sha256 is body_ref: personal data,
it may greet the customer by name) and outbox_seq (the journal entry it came from). A decision line
carries the columns of publish/next_best_actions (customer_pkey, channel, action_id, variant_id,
decision, decided_by = 'realtime_trigger', priority, score = null, holdout_group, eligible_actions,
reason, message_id, bandit_state_version = null, decided_on), then decided_at, trigger, due_at
(when the trigger became due: decided_at - due_at is the trigger's latency) and outbox_seq. Lines
never name a visitor id, a CRM id or a cookie: customers are their published customer_pkey.

Writing: lines are appended in whole-line writes and fsynced, under a lock file the erasure's
rewrite takes too; then the journal entries they came from are trimmed from Redis. A crash before
the trim leaves entries whose lines the next start finds (the newest `outbox_seq` of each family's
files), so no line is written twice; a line torn by a crash (no final newline) is cut at the next
start. Readers take complete lines only.

The daily decisions read the messages back (load_sends -> decisioning.realtime_sends) so that a
frequency cap counts realtime sends too (docs/realtime_triggers.md).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import orjson
import redis

JOURNAL_KEY = "tessera:rt:decisions"
FIELD = b"e"
MESSAGES = "campaign_outbox"
DECISIONS = "next_best_actions"
SUBDIR = "realtime"
LOCK = ".lock"

# publish/campaign_outbox's columns, in its order, then the realtime ones
MESSAGE_COLUMNS = (
    "message_id", "customer_pkey", "channel", "action_id", "variant_id", "subject", "body_ref", "content_type",
    "decided_on", "decided_at", "trigger", "reason", "body", "outbox_seq",
)  # fmt: skip
# publish/next_best_actions's columns, in its order, then the realtime ones
DECISION_COLUMNS = (
    "customer_pkey", "channel", "action_id", "variant_id", "decision", "decided_by", "priority", "score",
    "holdout_group", "eligible_actions", "reason", "message_id", "bandit_state_version", "decided_on",
    "decided_at", "trigger", "due_at", "outbox_seq",
)  # fmt: skip


def folder(publish_dir: Path, family: str) -> Path:
    if family not in (MESSAGES, DECISIONS):
        raise ValueError(f"a realtime outbox family is {MESSAGES} or {DECISIONS}, got {family!r}")
    return Path(publish_dir) / family / SUBDIR


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """The lock the mirror's appends and the erasure's rewrites of one folder take."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _day_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.jsonl") if p.is_file()) if directory.is_dir() else []


def _seq_tuple(seq: str) -> tuple[int, int]:
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)


def _last_line_seq(path: Path) -> str | None:
    """The outbox_seq of the file's last complete line; a torn last line (a crash mid-append) is cut."""
    size = path.stat().st_size
    if size == 0:
        return None
    with open(path, "r+b") as f:
        chunk = 1 << 16
        start = max(0, size - chunk)
        f.seek(start)
        tail = f.read()
        while b"\n" not in tail[:-1] and start > 0:  # a last line longer than the chunk
            start = max(0, start - chunk)
            f.seek(start)
            tail = f.read()
        if not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            f.truncate(start + cut + 1 if cut >= 0 else start)
            f.flush()
            os.fsync(f.fileno())
            tail = tail[: cut + 1] if cut >= 0 else b""
    lines = tail.rstrip(b"\n").split(b"\n")
    return orjson.loads(lines[-1])["outbox_seq"] if lines and lines[-1] else None


def mirrored_up_to(publish_dir: Path, family: str) -> str:
    """The newest journal entry a family's files hold ("0-0": none), cutting torn lines on the way."""
    newest = "0-0"
    directory = folder(publish_dir, family)
    with locked(directory):
        for path in _day_files(directory):
            seq = _last_line_seq(path)
            if seq is not None and _seq_tuple(seq) > _seq_tuple(newest):
                newest = seq
    return newest


def _append(directory: Path, lines_by_day: dict[str, list[bytes]]) -> None:
    with locked(directory):
        for day, lines in sorted(lines_by_day.items()):
            fd = os.open(directory / f"{day}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, b"".join(lines))
                os.fsync(fd)
            finally:
                os.close(fd)


class Mirror:
    """Copies the journal into the day files, in order, each entry once per family; then trims it
    from Redis. Each family remembers how far its files go, so a crash between the two families'
    appends writes the missing lines of the second one at the next start, and none twice."""

    def __init__(self, client: redis.Redis, publish_dir: Path, journal_key: str = JOURNAL_KEY):
        self.client = client
        self.publish_dir = Path(publish_dir)
        self.journal_key = journal_key
        self._after: dict[str, str] | None = None  # per family, the last entry its files hold

    def flush(self, batch: int = 1000) -> int:
        """Mirror every journal entry not yet in the files; returns how many entries were read."""
        if self._after is None:
            self._after = {family: mirrored_up_to(self.publish_dir, family) for family in (MESSAGES, DECISIONS)}
        read = 0
        while True:
            start = min(self._after.values(), key=_seq_tuple)
            rows = self.client.xrange(self.journal_key, min=f"({start}", count=batch)
            if not rows:
                return read
            lines: dict[str, dict[str, list[bytes]]] = {MESSAGES: {}, DECISIONS: {}}
            for entry_id, fields in rows:
                seq = entry_id.decode()
                entry = orjson.loads(fields[FIELD])
                for family, row, columns in (
                    (MESSAGES, entry.get("message"), MESSAGE_COLUMNS),
                    (DECISIONS, entry["decision"], DECISION_COLUMNS),
                ):
                    if row is not None and _seq_tuple(seq) > _seq_tuple(self._after[family]):
                        row = {**row, "outbox_seq": seq}
                        lines[family].setdefault(row["decided_on"], []).append(_line(row, columns))
            last = rows[-1][0].decode()
            for family in (MESSAGES, DECISIONS):
                _append(folder(self.publish_dir, family), lines[family])
                self._after[family] = last
            read += len(rows)
            # written and fsynced: the journal no longer needs them (XTRIM MINID keeps ids >= the bound)
            ms, n = _seq_tuple(last)
            self.client.xtrim(self.journal_key, minid=f"{ms}-{n + 1}", approximate=False)


def _line(row: dict, columns: tuple[str, ...]) -> bytes:
    missing = [c for c in columns if c not in row]
    if missing:
        raise ValueError(f"a realtime outbox line lacks {', '.join(missing)}")
    return orjson.dumps({c: row[c] for c in columns}) + b"\n"


def read(publish_dir: Path, family: str = MESSAGES, day: date | str | None = None) -> list[dict]:
    """The complete lines of one day's file (every day's, oldest first, without `day`)."""
    directory = folder(publish_dir, family)
    paths = [directory / f"{day}.jsonl"] if day is not None else _day_files(directory)
    rows = []
    for path in paths:
        if not path.exists():
            continue
        # the part after the last newline is empty, or a line a crash tore: not read
        for line in path.read_bytes().split(b"\n")[:-1]:
            if line:
                rows.append(orjson.loads(line))
    return rows


# --- what else reads or removes them ------------------------------------------------------------

SENDS_COLUMNS = {
    "message_id": "varchar",
    "customer_pkey": "varchar",
    "action_id": "varchar",
    "variant_id": "varchar",
    "channel": "varchar",
    "decided_on": "date",
}


def load_sends(con, publish_dir: Path) -> int:
    """decisioning.realtime_sends (the columns of decisioning.sends) from the realtime message files,
    the published customer_pkey mapped back to customer_key over audiences.active_customers (the
    connection needs pseudonym.install()). Returns the rows loaded."""
    from tessera.decisioning.decide import REALTIME_SENDS_DDL

    con.execute("create schema if not exists decisioning")
    con.execute(REALTIME_SENDS_DDL)
    con.execute("delete from decisioning.realtime_sends")
    paths = [p.as_posix() for p in _day_files(folder(publish_dir, MESSAGES))]
    if not paths:
        return 0
    # complete lines only: a line torn by a crash mid-append is not JSON and is skipped
    con.read_json(paths, columns=SENDS_COLUMNS, format="newline_delimited", ignore_errors=True).create_view(
        "__realtime_messages", replace=True
    )
    try:
        con.execute(
            """
            insert into decisioning.realtime_sends
            select distinct m.message_id, c.customer_key, m.action_id, m.variant_id, m.channel, m.decided_on
            from __realtime_messages as m
            inner join (select customer_key, customer_pkey(customer_key) as customer_pkey
                        from audiences.active_customers) as c on c.customer_pkey = m.customer_pkey
            where m.message_id is not null
            """
        )
    finally:
        con.execute("drop view if exists __realtime_messages")
    return con.execute("select count(*) from decisioning.realtime_sends").fetchall()[0][0]


def erase(publish_dir: Path, values: Iterable[str], min_chars: int = 6) -> dict[str, int]:
    """Rewrite every realtime outbox file without the lines of erased people: a line goes when its
    customer_pkey is one of `values` or its text mentions one (case-insensitively; values shorter
    than `min_chars` are not searched for in text). Each file is written aside and renamed over the
    old one under the mirror's lock. Returns {"lines_removed", "files_rewritten"}."""
    values = [v for v in values if v]
    exact = set(values)
    needles = sorted({v.casefold() for v in values if len(v) >= min_chars})
    counts = {"lines_removed": 0, "files_rewritten": 0}
    if not values:
        return counts
    for family in (MESSAGES, DECISIONS):
        directory = folder(publish_dir, family)
        if not directory.is_dir():
            continue
        with locked(directory):
            for path in _day_files(directory):
                lines = path.read_bytes().split(b"\n")
                kept = []
                for line in lines[:-1]:  # the part after the last newline is a torn line: dropped too
                    text = line.decode("utf-8", errors="replace")
                    row = orjson.loads(line) if line else {}
                    if row.get("customer_pkey") in exact or any(n in text.casefold() for n in needles):
                        counts["lines_removed"] += 1
                        continue
                    kept.append(line + b"\n")
                if len(kept) != len(lines) - 1 or lines[-1]:
                    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                    staging.write_bytes(b"".join(kept))
                    with open(staging, "rb") as f:
                        os.fsync(f.fileno())
                    os.replace(staging, path)
                    counts["files_rewritten"] += 1
    return counts


def prune(publish_dir: Path, keep_days: float, today: date) -> list[str]:
    """Remove day files older than `keep_days` (the publish retention); returns their names."""
    removed = []
    for family in (MESSAGES, DECISIONS):
        directory = folder(publish_dir, family)
        with locked(directory):
            for path in _day_files(directory):
                try:
                    day = date.fromisoformat(path.stem)
                except ValueError:
                    continue
                if (today - day).days > keep_days:
                    path.unlink()
                    removed.append(f"{family}/{path.name}")
    return removed
