"""The consumer's durable record of what it posted: (alert id, revision) → channel and ts.

Alerts arrive at least once (Pub/Sub redelivers, the pipeline re-publishes after a restart),
so a revision already recorded as posted is acknowledged without posting again. A post is
recorded *pending* before the Web API call and *posted* after it: a pending record found
later means the consumer died in between, and the post is looked up in its channel before
it is made again (``dexwatch.app.slack.delivery``). SQLite in WAL mode, committed on every
change: a kill -9 loses nothing committed.

A ledger created by this process (``fresh``) knows nothing of earlier posts: on a Cloud Run
instance's ephemeral disk, every alert older than the process is looked up first.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from dexwatch.core.schemas.alert import Alert

_SCHEMA = """
create table if not exists posts (
    alert_id text not null,
    revision integer not null,
    channel text not null,
    state text not null check (state in ('pending', 'posted')),
    ts text,
    thread_ts text,
    alert text not null,
    recorded_at real not null,
    primary key (alert_id, revision)
);
create table if not exists feedback (
    feedback_id text primary key,
    alert_id text not null,
    line text not null,
    row text not null,
    written integer not null default 0,
    at real not null
);
"""


@dataclass(frozen=True)
class Post:
    alert_id: str
    revision: int
    channel: str
    state: str
    ts: str | None
    thread_ts: str | None
    alert: Alert
    recorded_at: float

    @property
    def thread(self) -> str | None:
        """The ts replies to this post's thread go under."""
        return self.thread_ts or self.ts


class PostLedger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fresh = not path.exists()
        self.opened_at = time.time()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("pragma journal_mode=wal")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def get(self, alert_id: str, revision: int) -> Post | None:
        rows = self._select("where alert_id = ? and revision = ?", (alert_id, revision))
        return rows[0] if rows else None

    def root(self, alert_id: str) -> Post | None:
        """The thread's first post: revision 0, or the earliest revision posted."""
        rows = self._select(
            "where alert_id = ? and state = 'posted' order by revision limit 1", (alert_id,)
        )
        return rows[0] if rows else None

    def latest(self, alert_id: str) -> Post | None:
        rows = self._select(
            "where alert_id = ? and state = 'posted' order by revision desc limit 1", (alert_id,)
        )
        return rows[0] if rows else None

    def pending(self, alert: Alert, channel: str, thread_ts: str | None) -> None:
        self._write(alert, channel, "pending", None, thread_ts)

    def posted(self, alert: Alert, channel: str, ts: str, thread_ts: str | None) -> None:
        self._write(alert, channel, "posted", ts, thread_ts)

    def add_feedback(self, feedback_id: str, alert_id: str, line: str, row: dict) -> bool:
        """Record a click (the warehouse row to write, the line shown on the thread);
        False when that click is on record already (Slack retries a slow answer)."""
        with self._lock:
            cursor = self._conn.execute(
                "insert or ignore into feedback values (?, ?, ?, ?, 0, ?)",
                (feedback_id, alert_id, line, orjson.dumps(row).decode(), time.time()),
            )
        return cursor.rowcount == 1

    def unwritten_feedback(self) -> list[tuple[str, dict]]:
        """Clicks not yet in the warehouse: (feedback id, row)."""
        with self._lock:
            rows = self._conn.execute(
                "select feedback_id, row from feedback where written = 0 order by at"
            ).fetchall()
        return [(fid, orjson.loads(row)) for fid, row in rows]

    def feedback_written(self, feedback_ids: list[str]) -> None:
        with self._lock:
            self._conn.executemany(
                "update feedback set written = 1 where feedback_id = ?",
                [(f,) for f in feedback_ids],
            )

    def feedback(self, alert_id: str) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "select line from feedback where alert_id = ? order by at", (alert_id,)
            ).fetchall()
        return [line for (line,) in rows]

    def close(self) -> None:
        self._conn.close()

    def _write(
        self, alert: Alert, channel: str, state: str, ts: str | None, thread_ts: str | None
    ) -> None:
        with self._lock:
            self._conn.execute(
                "insert or replace into posts values (?, ?, ?, ?, ?, ?, ?, ?)",
                (alert.alert_id, alert.revision, channel, state, ts, thread_ts,
                 alert.to_json().decode(), time.time()),
            )  # fmt: skip

    def _select(self, where: str, args: tuple) -> list[Post]:
        with self._lock:
            rows = self._conn.execute(
                "select alert_id, revision, channel, state, ts, thread_ts, alert, recorded_at "
                "from posts " + where,
                args,
            ).fetchall()
        return [Post(*row[:6], Alert.from_json(row[6].encode()), row[7]) for row in rows]
